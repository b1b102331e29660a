package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// reconcileWindow is the period the overview and the reconciliation page
// count repairs and errors over.
const reconcileWindow = 24 * time.Hour

func (c *Console) reconcileRoutes(r chi.Router) {
	r.Get("/", c.runs)
	r.Post("/runs", c.startRun)
	r.Get("/runs/{id}", c.run)
	r.Get("/drift", c.drift)
}

type runsData struct {
	Summary *view.ReconcileSummary
	Runs    []*view.ReconcileRun
	Next    string
}

// runs lists the runs, newest first, with the last day's repairs and
// errors and the forms that start a run.
func (c *Console) runs(w http.ResponseWriter, r *http.Request) {
	if _, err := formValues(r); err != nil {
		c.fail(w, r, err)
		return
	}
	ctx := r.Context()
	sum, err := c.cfg.Store.ReconcileSummary(ctx, c.now().Add(-reconcileWindow))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	runs, next, err := c.cfg.Reconcile.Runs(ctx, view.RunFilter{Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "reconciliation", "nav.reconciliation", runsData{Summary: sum, Runs: runs, Next: nextPage(r, next)})
}

// startRun starts a run now, as POST /v1/reconcile-runs does: of every
// merchant (scope all), or of one merchant app or mini-app (its id, and
// the ISV app when several could have it).
func (c *Console) startRun(w http.ResponseWriter, r *http.Request) {
	scope := r.PostFormValue("scope")
	id, appID := strings.TrimSpace(r.PostFormValue("id")), strings.TrimSpace(r.PostFormValue("app_id"))
	switch scope {
	case notify.ScopeAll, notify.ScopeMerchant, notify.ScopeMiniApp:
	default:
		c.fail(w, r, notify.Errorf(notify.EINVALID, "bad_scope", "scope must be all, auth_app_id or mini_app_id"))
		return
	}
	run, err := c.cfg.Reconcile.StartWithReason(r.Context(), scope, id, appID, "requested from the console")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.Info().Int64("run", run.ID).Str("scope", run.Scope).Str("scope_id", run.ScopeID).Int("targets", run.Targets).
		Msg("reconcile run requested from the console")
	c.done(w, r, Base+"/reconciliation/runs/"+strconv.FormatInt(run.ID, 10), "started")
}

type runData struct {
	Run   *view.ReconcileRun
	Took  time.Duration // 0 while it runs
	Drift []*view.Drift
	Next  string
}

// run shows one run: its counts, its first errors and its repairs (a
// page at a time).
func (c *Console) run(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err == nil {
		_, err = formValues(r)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx := r.Context()
	run, err := c.cfg.Reconcile.RunByID(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ds, next, err := c.cfg.Reconcile.Drift(ctx, view.DriftFilter{RunID: id, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := runData{Run: run, Drift: ds, Next: nextPage(r, next)}
	if run.FinishedAt != nil {
		d.Took = run.FinishedAt.Sub(run.StartedAt)
	}
	c.render(w, r, "run", "run.title", d)
}

type driftData struct {
	Query listQuery
	Items []*view.Drift
}

// drift lists the repairs, newest first, of a merchant app, a mini-app, a
// kind or a run.
func (c *Console) drift(w http.ResponseWriter, r *http.Request) {
	v, err := formValues(r, "auth_app_id", "mini_app_id", "kind", "run_id")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f := view.DriftFilter{AuthAppID: v["auth_app_id"], MiniAppID: v["mini_app_id"], Kind: v["kind"], Cursor: r.URL.Query().Get("cursor")}
	switch f.Kind {
	case "", notify.DriftAuthorization, notify.DriftMiniAppVersion:
	default:
		c.fail(w, r, badQuery("kind", errWord("authorization or mini_app_version")))
		return
	}
	if s := v["run_id"]; s != "" {
		if f.RunID, err = strconv.ParseInt(s, 10, 64); err != nil || f.RunID < 1 {
			c.fail(w, r, badQuery("run_id", errWord("a run's id, a positive whole number")))
			return
		}
	}
	items, next, err := c.cfg.Reconcile.Drift(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "drift", "drift.title", driftData{Query: listQuery{Values: v, Next: nextPage(r, next)}, Items: items})
}
