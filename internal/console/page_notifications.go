package console

import (
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func (c *Console) notificationRoutes(r chi.Router) {
	r.Get("/", c.notifications)
	r.Get("/{notify_id}", c.notification)
	r.Post("/{notify_id}/reprocess", c.reprocess)
}

type notificationsData struct {
	Query listQuery
	Items []*view.StoredNotification
}

// localTime is the format of a datetime-local input.
const localTime = "2006-01-02T15:04"

// parseLocal reads a datetime-local value in the console's time zone (or
// an RFC 3339 time); nil for "".
func (c *Console) parseLocal(name, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.ParseInLocation(localTime, s, c.cfg.Location)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return nil, badQuery(name, errWord("a time such as 2026-12-01T10:00"))
		}
	}
	return &t, nil
}

func (c *Console) notifications(w http.ResponseWriter, r *http.Request) {
	v, err := formValues(r, "status", "msg_method", "app_id", "since", "until")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f := view.NotificationFilter{Status: notify.Status(v["status"]), MsgMethod: v["msg_method"], AppID: v["app_id"],
		Cursor: r.URL.Query().Get("cursor"), Limit: view.DefaultLimit}
	if f.Status != "" && !f.Status.Valid() {
		c.fail(w, r, badQuery("status", errWord("applied, stale, unhandled or failed")))
		return
	}
	if f.Since, err = c.parseLocal("since", v["since"]); err == nil {
		f.Until, err = c.parseLocal("until", v["until"])
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	items, next, err := c.cfg.Store.Notifications(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "notifications", "nav.notifications", notificationsData{Query: listQuery{Values: v, Next: nextPage(r, next)}, Items: items})
}

// param is one parameter of a notification, as received.
type param struct{ Name, Value string }

type notificationData struct {
	N           *view.StoredNotification
	Params      []param
	CanRedo     bool   // failed or unhandled: it may be reprocessed
	ReprocessTo string // the form's action
}

// notification shows a stored notification: its parameters (biz_content
// apart, pretty-printed), what verified it, how often Alipay delivered it,
// and a reprocess button when it failed or was not handled.
func (c *Console) notification(w http.ResponseWriter, r *http.Request) {
	appID := r.URL.Query().Get("app_id")
	n, err := c.cfg.Store.Notification(r.Context(), appID, chi.URLParam(r, "notify_id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := notificationData{N: n, CanRedo: n.Status == notify.StatusFailed || n.Status == notify.StatusUnhandled,
		ReprocessTo: Base + "/notifications/" + url.PathEscape(n.NotifyID) + "/reprocess"}
	for _, k := range sortedKeys(n.Params) {
		if k == "biz_content" {
			continue
		}
		v := n.Params[k]
		if k == "sign" {
			v = notify.ClipTo(v, 24)
		}
		d.Params = append(d.Params, param{k, v})
	}
	c.render(w, r, "notification", "notification.title", d)
}

// detailPath is a notification's page.
func detailPath(n *view.StoredNotification) string {
	return Base + "/notifications/" + url.PathEscape(n.NotifyID) + "?app_id=" + url.QueryEscape(n.AppID)
}

// reprocess runs the notification's handler again (failed and unhandled
// ones; any other is left as it is) and goes back to its page.
func (c *Console) reprocess(w http.ResponseWriter, r *http.Request) {
	n, err := c.cfg.Reprocessor.Reprocess(r.Context(), r.PostFormValue("app_id"), chi.URLParam(r, "notify_id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.Info().Str("notify_id", n.NotifyID).Str("app_id", n.AppID).Str("msg_method", n.MsgMethod).
		Str("status", string(n.Status)).Str("reason", n.Error).Msg("notification reprocessed from the console")
	c.done(w, r, detailPath(n), "reprocessed")
}
