package console

import (
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func (c *Console) merchantRoutes(r chi.Router) {
	r.Get("/", c.merchants)
	r.Get("/{auth_app_id}", c.merchant)
}

// expiringWithin is how soon a token expiring counts as a problem, and
// cancelledWithin how recent a cancellation.
const (
	expiringWithin  = 7 * 24 * time.Hour
	cancelledWithin = 7 * 24 * time.Hour
)

// listQuery is a listing's filter form: its values, and the link to the
// next page.
type listQuery struct {
	Values map[string]string
	Next   string // the next page's URI; "" on the last
}

// nextPage is the URI of r's listing with cursor next ("" when none).
func nextPage(r *http.Request, next string) string {
	if next == "" {
		return ""
	}
	q := r.URL.Query()
	q.Set("cursor", next)
	q.Del("done")
	return r.URL.Path + "?" + q.Encode()
}

// formValues reads the query parameters names (trimmed), refusing any
// other but cursor.
func formValues(r *http.Request, names ...string) (map[string]string, error) {
	q := r.URL.Query()
	out := map[string]string{}
	for k := range q {
		known := k == "cursor" || k == "done"
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			return nil, notify.Errorf(notify.EINVALID, "bad_query", "unknown query parameter %q", notify.Clip(k))
		}
	}
	for _, n := range names {
		out[n] = strings.TrimSpace(q.Get(n))
	}
	return out, nil
}

type merchantsData struct {
	Query listQuery
	Items []*view.Merchant
}

func (c *Console) merchants(w http.ResponseWriter, r *http.Request) {
	v, err := formValues(r, "q", "status", "problem")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	now := c.now()
	f := view.MerchantFilter{Prefix: v["q"], Status: v["status"], Problem: v["problem"], Cursor: r.URL.Query().Get("cursor"),
		Since: now.Add(-cancelledWithin), Until: now.Add(expiringWithin)}
	switch f.Status {
	case "", "authorized", "cancelled":
	default:
		c.fail(w, r, badQuery("status", errWord("authorized or cancelled")))
		return
	}
	switch f.Problem {
	case "", view.MerchantRefreshError, view.MerchantExpiring, view.MerchantCancelled:
	default:
		c.fail(w, r, badQuery("problem", errWord("refresh_error, expiring or cancelled")))
		return
	}
	items, next, err := c.cfg.Store.Merchants(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "merchants", "nav.merchants", merchantsData{Query: listQuery{Values: v, Next: nextPage(r, next)}, Items: items})
}

type errWord string

func (e errWord) Error() string { return "want " + string(e) }

type merchantData struct {
	AuthAppID      string
	Authorizations []*view.Merchant
	MiniApps       []*view.MiniApp
	Orders         []*view.MiniAppOrder
	Notifications  []*view.StoredNotification
	Reconciled     bool // reconciliation is on: link to its repairs
}

// merchantNotificationsShown is how many notifications a merchant's page
// shows.
const merchantNotificationsShown = 20

// merchant shows one merchant app: its authorizations (of each of our
// apps), its mini-apps (the merchant app itself, and those its orders
// made), its orders (by mini-app, or by its PID) and its latest
// notifications.
func (c *Console) merchant(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := chi.URLParam(r, "auth_app_id")
	d := merchantData{AuthAppID: id, Reconciled: c.cfg.Reconcile != nil}
	var err error
	if d.Authorizations, _, err = c.cfg.Store.Merchants(ctx, view.MerchantFilter{AuthAppID: id}); err != nil {
		c.fail(w, r, err)
		return
	}
	var pids []string
	for _, a := range d.Authorizations {
		if a.UserID != "" {
			pids = append(pids, a.UserID)
		}
	}
	if d.Orders, err = c.cfg.Store.OrdersOf(ctx, []string{id}, pids, view.DefaultLimit); err != nil {
		c.fail(w, r, err)
		return
	}
	ids, orderNos := []string{id}, []string{}
	for _, o := range d.Orders {
		orderNos = append(orderNos, o.OrderNo)
		if o.MiniAppID != "" && o.MiniAppID != id {
			ids = append(ids, o.MiniAppID)
		}
	}
	if d.MiniApps, _, err = c.cfg.Store.MiniApps(ctx, view.MiniAppFilter{IDs: ids, Limit: view.MaxLimit}); err != nil {
		c.fail(w, r, err)
		return
	}
	if d.Notifications, err = c.cfg.Store.MerchantNotifications(ctx, id, ids, orderNos, merchantNotificationsShown); err != nil {
		c.fail(w, r, err)
		return
	}
	if len(d.Authorizations) == 0 && len(d.Orders) == 0 && len(d.MiniApps) == 0 && len(d.Notifications) == 0 {
		c.fail(w, r, notify.Errorf(notify.ENOTFOUND, "not_found", "nothing is known of merchant app %q", notify.Clip(id)))
		return
	}
	c.render(w, r, "merchant", "merchant.title", d)
}
