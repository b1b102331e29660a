package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// TestReconciler_TokenChangedDuringCheck: Alipay's "invalid" is about the
// token the check read; when a grant or a refresh stored another one
// while the query was on its way, the authorization is kept, and the run
// records that the token changed. The plain invalid case is still
// repaired, dated at the query less the clock skew allowed, so that a
// grant Alipay dates just before the query wins.
func TestReconciler_TokenChangedDuringCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// setup returns an env whose merchantA authorized an hour ago.
	setup := func(t *testing.T) *env {
		e := newEnv(t, 2*time.Second)
		e.authorizeAt(t, merchantA, time.Now().Add(-time.Hour))
		return e
	}
	// kept checks that the authorization survived the run with token, and
	// that the run recorded the change.
	kept := func(t *testing.T, e *env, run *view.ReconcileRun, token string) {
		t.Helper()
		a, err := e.db.Authorization(ctx, e.app.ID, merchantA)
		if err != nil || a.Status != "authorized" || !a.HasToken {
			t.Fatalf("%+v %v", a, err)
		}
		if got := e.token(t, merchantA); got != token {
			t.Fatalf("stored token %q; want %q", got, token)
		}
		if run.Repaired != 0 || run.Errors != 1 || errorKinds(run)[notify.RecErrTokenChanged] != 1 {
			t.Fatalf("%+v", run)
		}
		if n := e.count(t, `SELECT count(*) FROM events WHERE type = $1`, notify.EventAuthorizationCancelled); n != 0 {
			t.Fatalf("%d authorization.cancelled events", n)
		}
		if n := e.count(t, `SELECT count(*) FROM reconcile_drift`); n != 0 {
			t.Fatalf("%d drift records", n)
		}
	}

	t.Run("OKReauthorizedKept", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.sim.Invalidate(e.app.ID, merchantA)
		// The merchant authorized again ten minutes ago; Alipay's
		// notification of it, delivered again, arrives while the query
		// of the old token is on its way: older than the query, newer
		// than the grant the check read.
		e.calls.before(openapisim.MethodAuthTokenQuery, func() {
			if out := e.grant(t, merchantA, "token-fresh", time.Now().Add(-10*time.Minute).UnixMilli()); out.Status != notify.StatusApplied {
				t.Errorf("grant %+v", out)
			}
		})
		run := e.runMerchant(t, e.reconciler(t, nil), merchantA)
		kept(t, e, run, "token-fresh")
	})
	t.Run("OKRefreshedKept", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		old, _ := e.sim.Tokens(e.app.ID, merchantA)
		// Another replica's refresher renews the token while the query of
		// the old one, which Alipay takes no more, is on its way.
		var fresh string
		e.calls.before(openapisim.MethodAuthTokenQuery, func() {
			e.sim.InvalidateToken(old)
			n, failed, err := e.svc.Refresher(outbound.RefresherConfig{Window: 100 * 365 * 24 * time.Hour}).RefreshDue(ctx)
			if n != 1 || failed != 0 || err != nil {
				t.Errorf("refresh: %d %d %v", n, failed, err)
			}
			fresh = e.token(t, merchantA)
		})
		run := e.runMerchant(t, e.reconciler(t, nil), merchantA)
		if fresh == "" || fresh == old {
			t.Fatalf("refreshed token %q, old %q", fresh, old)
		}
		kept(t, e, run, fresh)
	})
	t.Run("OKInvalidRepaired", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.sim.Invalidate(e.app.ID, merchantA)
		before := time.Now()
		run := e.runMerchant(t, e.reconciler(t, func(c *reconcile.Config) { c.ClockSkew = 2 * time.Minute }), merchantA)
		after := time.Now()
		a, err := e.db.Authorization(ctx, e.app.ID, merchantA)
		if err != nil || a.Status != "cancelled" || a.HasToken || run.Repaired != 1 || run.Errors != 0 {
			t.Fatalf("%+v %v; run %+v", a, err, run)
		}
		ds, _, _ := e.db.Drift(ctx, view.DriftFilter{Kind: notify.DriftAuthorization})
		if len(ds) != 1 || ds[0].ObservedAt.Before(before.Add(-2*time.Minute-time.Second)) || ds[0].ObservedAt.After(after.Add(-2*time.Minute)) {
			t.Fatalf("observed at %v; the query was between %v and %v, less 2m", ds[0].ObservedAt, before, after)
		}
		// A grant dated before the skew allowed is older than the repair.
		if out := e.grant(t, merchantA, "token-old", before.Add(-3*time.Minute).UnixMilli()); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
		// One Alipay dates a minute before the query (its clock lagging),
		// delivered after the repair, wins: the merchant authorized again.
		if out := e.grant(t, merchantA, "token-near", before.Add(-time.Minute).UnixMilli()); out.Status != notify.StatusApplied {
			t.Fatalf("%+v", out)
		}
		if got := e.token(t, merchantA); got != "token-near" {
			t.Fatal(got)
		}
	})
}
