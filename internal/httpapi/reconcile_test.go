package httpapi_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func TestOps_Reconcile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	app := testkit.KeyApp()
	sim := openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.AlipayKey()})
	t.Cleanup(sim.Close)
	db := pgtest.New(t)
	svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{app}, GatewayURL: sim.URL(), Store: db, Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := reconcile.New(reconcile.Config{Store: db, Alipay: svc, AppIDs: svc.AppIDs(), Logger: testkit.Logger(t)})
	g := startGateway(t, db, rig{cfg: httpapi.Config{Outbound: svc, Reconcile: rec}})
	const merchant = "2021000000000601"
	link, _ := svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: "https://gw.example.com/alipay/auth/callback"})
	if _, err := svc.CompleteAuthorization(ctx, outbound.Callback{Code: sim.IssueCode(app.ID, merchant, "2088000000000601"), State: link.State}); err != nil {
		t.Fatal(err)
	}
	sim.SetVersion(merchant, openapisim.Version{Version: "1.0.0", Status: "AUDIT_REJECT", RejectReason: "名称不符"})

	var run view.ReconcileRun
	t.Run("OKStart", func(t *testing.T) {
		if code := g.call(t, "POST", "/v1/reconcile-runs", map[string]string{"scope": "mini_app_id", "mini_app_id": merchant}, &run); code != 202 {
			t.Fatalf("%d %+v", code, run)
		}
		if run.Status != notify.RunRunning || run.Trigger != notify.RunManual || run.Targets != 1 || run.ScopeID != merchant {
			t.Fatalf("%+v", run)
		}
		if _, err := rec.Work(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKRuns", func(t *testing.T) {
		var got view.ReconcileRun
		g.mustGet(t, fmt.Sprintf("/v1/reconcile-runs/%d", run.ID), &got)
		if got.Status != notify.RunFinished || got.Repaired != 1 || got.Done != 1 || got.Checked != 2 || got.FinishedAt == nil {
			t.Fatalf("%+v", got)
		}
		var p struct {
			Items []view.ReconcileRun `json:"items"`
		}
		g.mustGet(t, "/v1/reconcile-runs?limit=10", &p)
		if len(p.Items) != 1 || p.Items[0].ID != run.ID {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("OKDrift", func(t *testing.T) {
		var p struct {
			Items      []view.Drift `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		g.mustGet(t, "/v1/drift?kind=mini_app_version&mini_app_id="+merchant+"&since="+url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)), &p)
		if len(p.Items) != 1 || p.Items[0].After != notify.AuditRejected || p.Items[0].Entity != merchant+"@1.0.0" || p.NextCursor != "" {
			t.Fatalf("%+v", p)
		}
		runID := p.Items[0].RunID
		g.mustGet(t, "/v1/drift?kind=authorization", &p)
		if len(p.Items) != 0 {
			t.Fatalf("%+v", p)
		}
		g.mustGet(t, "/v1/drift?run_id="+strconv.FormatInt(runID, 10), &p)
		if len(p.Items) != 1 {
			t.Fatalf("drift of run %d: %+v", runID, p)
		}
		g.mustGet(t, "/v1/drift?run_id="+strconv.FormatInt(runID+1, 10), &p)
		if len(p.Items) != 0 {
			t.Fatalf("drift of run %d: %+v", runID+1, p)
		}
	})
	t.Run("OKLastReconciledAt", func(t *testing.T) {
		var m view.MiniApp
		g.mustGet(t, "/v1/mini-apps/"+merchant, &m)
		var a view.Authorization
		g.mustGet(t, "/v1/authorizations/"+merchant, &a)
		if m.LastReconciledAt == nil || a.LastReconciledAt == nil || m.AuditStatus != notify.AuditRejected {
			t.Fatalf("%+v %+v", m, a)
		}
	})
	t.Run("ErrBadRequest", func(t *testing.T) {
		for _, body := range []any{
			map[string]string{"scope": "everything"},
			map[string]string{"scope": "all", "auth_app_id": merchant},
			map[string]string{"scope": "auth_app_id", "mini_app_id": merchant},
			map[string]string{"scope": "auth_app_id"},
			`{"scope": "all", "extra": 1}`,
			`not json`,
		} {
			if code := g.call(t, "POST", "/v1/reconcile-runs", body, nil); code != 400 {
				t.Errorf("%v: %d", body, code)
			}
		}
		for _, path := range []string{"/v1/drift?kind=order", "/v1/drift?since=yesterday", "/v1/drift?run_id=0", "/v1/drift?run_id=x", "/v1/drift?cursor=bogus", "/v1/reconcile-runs?x=1", "/v1/reconcile-runs/zero"} {
			if code := g.get(t, "GET", path, opsToken, nil); code != 400 {
				t.Errorf("GET %s: %d", path, code)
			}
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if code := g.call(t, "POST", "/v1/reconcile-runs", map[string]string{"scope": "auth_app_id", "auth_app_id": "2021000000009999"}, nil); code != 404 {
			t.Fatal(code)
		}
		if code := g.get(t, "GET", "/v1/reconcile-runs/999999", opsToken, nil); code != 404 {
			t.Fatal(code)
		}
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		if code := g.get(t, "GET", "/v1/drift", "", nil); code != 401 {
			t.Fatal(code)
		}
	})
}
