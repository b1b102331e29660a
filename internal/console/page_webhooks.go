package console

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func (c *Console) webhookRoutes(r chi.Router) {
	r.Get("/", c.endpoints)
	r.Get("/{id}", c.endpoint)
	r.Post("/{id}/replay", c.replay)
	r.Get("/deliveries/{id}", c.delivery)
	r.Post("/deliveries/{id}/retry", c.retry)
}

// safeURL is u without the credentials it may hold.
func safeURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	p.User = url.User("***")
	return p.String()
}

func idOf(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id < 1 {
		return 0, notify.Errorf(notify.EINVALID, "bad_id", "id must be a positive whole number, not %q", notify.Clip(chi.URLParam(r, "id")))
	}
	return id, nil
}

type endpointsData struct {
	Endpoints []endpointState
	FeedLag   string
}

func (c *Console) endpoints(w http.ResponseWriter, r *http.Request) {
	eps, err := c.cfg.Webhooks.Endpoints(r.Context(), false)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	st, err := c.cfg.Store.WebhookStats(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var d endpointsData
	for _, ep := range eps {
		d.Endpoints = append(d.Endpoints, endpointState{ID: ep.ID, URL: safeURL(ep.URL), Enabled: ep.Enabled,
			OldestPending: st.OldestPending[ep.ID], Dead: st.Dead[ep.ID], DisabledReason: ep.DisabledReason})
	}
	c.render(w, r, "webhooks", "nav.webhooks", d)
}

type endpointData struct {
	Endpoint   *notify.Endpoint
	URL        string
	Query      listQuery
	Deliveries []*view.Delivery
}

func (c *Console) endpoint(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v, err := formValues(r, "status")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	switch v["status"] {
	case "", view.DeliveryPending, view.DeliveryDelivered, view.DeliveryDead:
	default:
		c.fail(w, r, badQuery("status", errWord("pending, delivered or dead")))
		return
	}
	ep, err := c.cfg.Webhooks.Endpoint(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ds, next, err := c.cfg.Webhooks.Deliveries(r.Context(), view.DeliveryFilter{EndpointID: id, Status: v["status"], Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "endpoint", "endpoint.title", endpointData{Endpoint: ep, URL: safeURL(ep.URL),
		Query: listQuery{Values: v, Next: nextPage(r, next)}, Deliveries: ds})
}

// replay queues again every event since a time for the endpoint.
func (c *Console) replay(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	since, err := c.parseLocal("since", r.PostFormValue("since"))
	if err == nil && since == nil {
		err = badQuery("since", errWord("a time such as 2026-12-01T10:00"))
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	n, err := c.cfg.Webhooks.ReplayEndpoint(r.Context(), id, *since)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.Info().Int64("endpoint_id", id).Time("since", *since).Int("deliveries", n).Msg("webhook endpoint replayed from the console")
	c.done(w, r, Base+"/webhooks/"+strconv.FormatInt(id, 10), "replayed")
}

func (c *Console) delivery(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.cfg.Webhooks.Delivery(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "delivery", "delivery.title", d)
}

// retry makes a delivery due now, with a fresh window.
func (c *Console) retry(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if _, err := c.cfg.Webhooks.RetryDelivery(r.Context(), id); err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.Info().Int64("delivery_id", id).Msg("webhook delivery queued again from the console")
	c.done(w, r, Base+"/webhooks/deliveries/"+strconv.FormatInt(id, 10), "retried")
}
