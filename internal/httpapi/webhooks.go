package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Webhooks manages the event endpoints and reads the deliveries and the
// feed (webhook.Admin). Each method returns an ENOTFOUND *notify.Error for
// an unknown id, an EINVALID one for what cannot work, and an
// EUNAVAILABLE one when the database cannot be reached.
type Webhooks interface {
	Create(ctx context.Context, c notify.EndpointChange) (*notify.Endpoint, error)
	Update(ctx context.Context, id int64, c notify.EndpointChange) (*notify.Endpoint, error)
	Rotate(ctx context.Context, id int64) (*notify.Endpoint, error)
	Endpoints(ctx context.Context, enabledOnly bool) ([]*notify.Endpoint, error)
	Endpoint(ctx context.Context, id int64) (*notify.Endpoint, error)
	DeleteEndpoint(ctx context.Context, id int64) error
	Deliveries(ctx context.Context, f view.DeliveryFilter) ([]*view.Delivery, string, error)
	Delivery(ctx context.Context, id int64) (*view.Delivery, error)
	RetryDelivery(ctx context.Context, id int64) (*view.Delivery, error)
	ReplayEndpoint(ctx context.Context, id int64, since time.Time) (int, error)
	Events(ctx context.Context, f view.EventFilter) (*view.EventPage, error)
}

// maxEndpointBody caps an endpoint's JSON.
const maxEndpointBody = 16 << 10

func (s *Server) routesWebhooks(r chi.Router) {
	r.Get("/events", s.listEvents)
	r.Post("/endpoints", s.createEndpoint)
	r.Get("/endpoints", s.listEndpoints)
	r.Get("/endpoints/{id}", s.getEndpoint)
	r.Patch("/endpoints/{id}", s.updateEndpoint)
	r.Delete("/endpoints/{id}", s.deleteEndpoint)
	r.Post("/endpoints/{id}/rotate-secret", s.rotateSecret)
	r.Post("/endpoints/{id}/replay", s.replayEndpoint)
	r.Get("/endpoints/{id}/deliveries", s.listDeliveries)
	r.Get("/deliveries/{id}", s.getDelivery)
	r.Post("/deliveries/{id}/retry", s.retryDelivery)
}

// idParam reads the path's {id}, a positive whole number.
func idParam(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id < 1 {
		return 0, notify.Errorf(notify.EINVALID, "bad_id", "id must be a positive whole number, not %q", notify.Clip(chi.URLParam(r, "id")))
	}
	return id, nil
}

// idOnly reads the path's {id} of a request that takes no query
// parameter; on a bad one it answers the error and returns false.
func idOnly(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := idParam(r)
	if err == nil {
		_, err = query(r)
	}
	if err != nil {
		writeError(w, err)
		return 0, false
	}
	return id, true
}

// answerByID answers what get returns for the path's {id}, on a request
// that takes no query parameter.
func answerByID[T any](w http.ResponseWriter, r *http.Request, get func(context.Context, int64) (T, error)) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	v, err := get(r.Context(), id)
	answer(w, v, err)
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "after", "type", "app_id", "limit")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.EventFilter{After: q.Get("after"), AppID: q.Get("app_id")}
	if t := q.Get("type"); t != "" {
		f.Types = strings.Split(t, ",")
		if err := notify.CheckEndpoint(notify.EndpointChange{EventTypes: &f.Types}, false); err != nil {
			writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "type: %s", notify.ErrorMessage(err)))
			return
		}
	}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	page, err := s.cfg.Webhooks.Events(r.Context(), f)
	answer(w, page, err)
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) {
	var c notify.EndpointChange
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	if err := decodeJSON(w, r, maxEndpointBody, &c, "a JSON endpoint"); err != nil {
		writeError(w, err)
		return
	}
	ep, err := s.cfg.Webhooks.Create(r.Context(), c)
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.Info().Int64("endpoint_id", ep.ID).Str("url", ep.URL).Strs("event_types", ep.EventTypes).Str("app_id", ep.AppID).
		Msg("webhook endpoint created")
	writeJSON(w, http.StatusCreated, ep)
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	eps, err := s.cfg.Webhooks.Endpoints(r.Context(), false)
	answerPage(w, eps, "", err)
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request) {
	answerByID(w, r, s.cfg.Webhooks.Endpoint)
}

func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	var c notify.EndpointChange
	if err := decodeJSON(w, r, maxEndpointBody, &c, "a JSON endpoint"); err != nil {
		writeError(w, err)
		return
	}
	ep, err := s.cfg.Webhooks.Update(r.Context(), id, c)
	if err == nil {
		s.log.Info().Int64("endpoint_id", ep.ID).Str("url", ep.URL).Bool("enabled", ep.Enabled).Msg("webhook endpoint updated")
	}
	answer(w, ep, err)
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Webhooks.DeleteEndpoint(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info().Int64("endpoint_id", id).Msg("webhook endpoint deleted")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	ep, err := s.cfg.Webhooks.Rotate(r.Context(), id)
	if err == nil {
		s.log.Info().Int64("endpoint_id", id).Msg("webhook endpoint secret rotated")
	}
	answer(w, ep, err)
}

func (s *Server) replayEndpoint(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	var body struct {
		Since *time.Time `json:"since"`
	}
	err := decodeJSON(w, r, maxEndpointBody, &body, `{"since": "an RFC 3339 time"}`)
	if err == nil && body.Since == nil {
		err = notify.Errorf(notify.EINVALID, "bad_json", `since is required: {"since": "2026-01-02T15:04:05Z"}`)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	n, err := s.cfg.Webhooks.ReplayEndpoint(r.Context(), id, *body.Since)
	if err == nil {
		s.log.Info().Int64("endpoint_id", id).Time("since", *body.Since).Int("deliveries", n).Msg("webhook endpoint replayed")
	}
	answer(w, map[string]any{"endpoint_id": id, "queued": n}, err)
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	id, err := idParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q, err := query(r, "status", "limit", "cursor")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.DeliveryFilter{EndpointID: id, Status: q.Get("status"), Cursor: q.Get("cursor")}
	switch f.Status {
	case "", view.DeliveryPending, view.DeliveryDelivered, view.DeliveryDead:
	default:
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "status must be pending, delivered or dead"))
		return
	}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Webhooks.Deliveries(r.Context(), f)
	answerPage(w, items, next, err)
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request) {
	answerByID(w, r, s.cfg.Webhooks.Delivery)
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	d, err := s.cfg.Webhooks.RetryDelivery(r.Context(), id)
	if err == nil {
		s.log.Info().Int64("delivery_id", id).Msg("webhook delivery queued again")
	}
	answer(w, d, err)
}
