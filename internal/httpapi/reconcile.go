package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Reconcile starts reconciliation runs and reads them and the drift they
// found (reconcile.Reconciler). Each method returns an ENOTFOUND
// *notify.Error for an unknown id or merchant, an EINVALID one for a bad
// request or cursor, and an EUNAVAILABLE one when the database cannot be
// reached.
type Reconcile interface {
	Start(ctx context.Context, scope, id, appID string) (*view.ReconcileRun, error)
	Runs(ctx context.Context, f view.RunFilter) ([]*view.ReconcileRun, string, error)
	RunByID(ctx context.Context, id int64) (*view.ReconcileRun, error)
	Drift(ctx context.Context, f view.DriftFilter) ([]*view.Drift, string, error)
}

// maxRunBody caps a run request's JSON.
const maxRunBody = 4 << 10

// routesReconcile adds reconciliation's ops routes (behind the bearer
// token).
func (s *Server) routesReconcile(r chi.Router) {
	r.Post("/reconcile-runs", s.startRun)
	r.Get("/reconcile-runs", s.listRuns)
	r.Get("/reconcile-runs/{id}", s.getRun)
	r.Get("/drift", s.listDrift)
}

// runRequest is POST /v1/reconcile-runs's body: the scope, and the id its
// scope names.
type runRequest struct {
	Scope     string `json:"scope"`
	AuthAppID string `json:"auth_app_id"`
	MiniAppID string `json:"mini_app_id"`
	AppID     string `json:"app_id"`
}

// startRun starts a run on demand and answers 202 with it: it goes on in
// the background, on every replica.
func (s *Server) startRun(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	var req runRequest
	if err := decodeJSON(w, r, maxRunBody, &req, `a JSON run request such as {"scope": "all"}`); err != nil {
		writeError(w, err)
		return
	}
	id := ""
	switch req.Scope {
	case notify.ScopeMerchant:
		id = req.AuthAppID
	case notify.ScopeMiniApp:
		id = req.MiniAppID
	}
	if req.Scope == notify.ScopeMerchant && req.MiniAppID != "" || req.Scope == notify.ScopeMiniApp && req.AuthAppID != "" ||
		req.Scope == notify.ScopeAll && (req.AuthAppID != "" || req.MiniAppID != "") {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_scope", "give the id the scope names only: auth_app_id for auth_app_id, mini_app_id for mini_app_id, none for all"))
		return
	}
	run, err := s.cfg.Reconcile.Start(r.Context(), req.Scope, id, req.AppID)
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.Info().Int64("run", run.ID).Str("scope", run.Scope).Str("scope_id", run.ScopeID).Int("targets", run.Targets).
		Msg("reconcile run requested")
	writeJSON(w, http.StatusAccepted, run)
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "limit", "cursor")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.RunFilter{Cursor: q.Get("cursor")}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Reconcile.Runs(r.Context(), f)
	answerPage(w, items, next, err)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	answerByID(w, r, s.cfg.Reconcile.RunByID)
}

func (s *Server) listDrift(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "run_id", "auth_app_id", "mini_app_id", "kind", "since", "limit", "cursor")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.DriftFilter{AuthAppID: q.Get("auth_app_id"), MiniAppID: q.Get("mini_app_id"), Kind: q.Get("kind"), Cursor: q.Get("cursor")}
	if s := q.Get("run_id"); s != "" {
		if f.RunID, err = strconv.ParseInt(s, 10, 64); err != nil || f.RunID < 1 {
			writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "run_id must be a positive whole number"))
			return
		}
	}
	if f.Kind != "" && f.Kind != notify.DriftAuthorization && f.Kind != notify.DriftMiniAppVersion {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "kind must be authorization or mini_app_version"))
		return
	}
	if f.Since, err = timeParam(q, "since"); err == nil {
		f.Limit, err = limitParam(q)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Reconcile.Drift(r.Context(), f)
	answerPage(w, items, next, err)
}
