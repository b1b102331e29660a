package console

import (
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func (c *Console) miniAppRoutes(r chi.Router) {
	r.Get("/", c.miniApps)
	r.Get("/{mini_app_id}", c.miniApp)
}

type miniAppsData struct {
	Query listQuery
	Items []*view.MiniApp
}

func (c *Console) miniApps(w http.ResponseWriter, r *http.Request) {
	v, err := formValues(r, "q", "status")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	switch v["status"] {
	case "", notify.AuditPassed, notify.AuditRejected, notify.BaseAuditPassed:
	default:
		c.fail(w, r, badQuery("status", errWord("audit_passed, audit_rejected or base_audit_passed")))
		return
	}
	items, next, err := c.cfg.Store.MiniApps(r.Context(), view.MiniAppFilter{Prefix: v["q"], AuditStatus: v["status"], Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "miniapps", "nav.miniapps", miniAppsData{Query: listQuery{Values: v, Next: nextPage(r, next)}, Items: items})
}

// reasons is an audit reason object: {"audit_images": [...], "memos":
// [{"memo": ..., "memo_image_list": [...]}]}; Raw keeps one of another
// shape, shown as it is.
type reasons struct {
	Images []string `json:"audit_images"`
	Memos  []struct {
		Memo   string   `json:"memo"`
		Images []string `json:"memo_image_list"`
	} `json:"memos"`
	Raw string `json:"-"`
}

func parseReasons(m json.RawMessage) *reasons {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	var r reasons
	if err := json.Unmarshal(m, &r); err != nil {
		return &reasons{Raw: string(m)}
	}
	if len(r.Images) == 0 && len(r.Memos) == 0 {
		return nil
	}
	return &r
}

// timelineEntry is one audit notification of a version.
type timelineEntry struct {
	view.AuditEntry
	Base, Promote *reasons
}

// versionTimeline is a version's latest outcome and its audits, newest
// first.
type versionTimeline struct {
	Version string
	Latest  *view.AppVersion // nil when only stale notifications name it
	Entries []timelineEntry
}

type miniAppData struct {
	App        *view.MiniApp
	Versions   []versionTimeline
	Orders     []*view.MiniAppOrder
	Reconciled bool // reconciliation is on: link to its repairs
}

// miniApp shows a mini-app's audit state and, version by version (newest
// first), every audit notification with its reasons, memos and image
// names, stale ones marked.
func (c *Console) miniApp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := chi.URLParam(r, "mini_app_id")
	app, err := c.cfg.Store.MiniApp(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	history, err := c.cfg.Store.AuditHistory(ctx, id)
	if err != nil && notify.ErrorCode(err) != notify.ENOTFOUND {
		c.fail(w, r, err)
		return
	}
	d := miniAppData{App: app, Reconciled: c.cfg.Reconcile != nil}
	byVersion := map[string]int{}
	for i := range app.Versions {
		byVersion[app.Versions[i].MiniAppVersion] = len(d.Versions)
		d.Versions = append(d.Versions, versionTimeline{Version: app.Versions[i].MiniAppVersion, Latest: &app.Versions[i]})
	}
	for _, e := range history {
		i, ok := byVersion[e.MiniAppVersion]
		if !ok {
			i = len(d.Versions)
			byVersion[e.MiniAppVersion] = i
			d.Versions = append(d.Versions, versionTimeline{Version: e.MiniAppVersion})
		}
		d.Versions[i].Entries = append(d.Versions[i].Entries, timelineEntry{AuditEntry: e,
			Base: parseReasons(e.BaseAuditReason), Promote: parseReasons(e.PromoteAuditReason)})
	}
	if d.Orders, err = c.cfg.Store.OrdersOf(ctx, []string{id}, nil, view.DefaultLimit); err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "miniapp", "miniapp.title", d)
}
