package outbound_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const tokenApp = openapisim.MethodAuthTokenApp

// refreshCalls counts the refresh_token calls the simulator got.
func refreshCalls(e *env) int {
	n := 0
	for _, c := range e.sim.Calls(tokenApp) {
		if c.Biz["grant_type"] == "refresh_token" {
			n++
		}
	}
	return n
}

// storedToken opens merchant's stored app_auth_token ("" when none).
func storedToken(t *testing.T, e *env, authAppID string) (string, string) {
	t.Helper()
	var (
		status string
		sealed []byte
	)
	err := e.db.Pool.QueryRow(context.Background(), `SELECT status, app_auth_token FROM authorizations WHERE app_id = $1 AND auth_app_id = $2`,
		e.app.ID, authAppID).Scan(&status, &sealed)
	if err != nil {
		t.Fatal(err)
	}
	token, err := testkit.Sealer(t).Open(sealed, notify.TokenOwner(e.app.ID, authAppID))
	if err != nil {
		t.Fatal(err)
	}
	return status, token
}

// authorizeDue authorizes the merchant app through the flow with tokens
// that expire in an hour (the refresh token in two), due for refresh
// within the 7-day window, and returns its app_auth_token.
func (e *env) authorizeDue(t *testing.T) string {
	t.Helper()
	e.sim.SetTokenLifetimes(3600, 7200)
	return e.authorize(t)
}

func TestRefresher_RefreshDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	// Tokens that expire in an hour: due within the 7-day window.
	e.sim.SetTokenLifetimes(3600, 7200)
	r := e.svc.Refresher(outbound.RefresherConfig{RetryAfter: time.Hour})

	t.Run("OK", func(t *testing.T) {
		old := e.authorize(t)
		n, failed, err := r.RefreshDue(ctx)
		if err != nil || n != 1 || failed != 0 {
			t.Fatalf("%d %d %v", n, failed, err)
		}
		live, _ := e.sim.Tokens(testkit.AppID, testkit.MerchantAppID)
		status, stored := storedToken(t, e, testkit.MerchantAppID)
		if status != "authorized" || stored != live || stored == old {
			t.Fatalf("stored %q, live %q, old %q", stored, live, old)
		}
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatalf("the refreshed token does not work: %v", err)
		}
	})
	t.Run("NotAgainWithinRetryAfter", func(t *testing.T) {
		calls := refreshCalls(e)
		if n, failed, err := r.RefreshDue(ctx); n+failed != 0 || err != nil {
			t.Fatalf("%d %d %v", n, failed, err)
		}
		if refreshCalls(e) != calls {
			t.Fatal("refreshed again at once")
		}
	})
	t.Run("NotDue", func(t *testing.T) {
		e2 := newEnv(t, options{}) // a year-long token
		e2.authorize(t)
		if n, failed, _ := e2.svc.Refresher(outbound.RefresherConfig{}).RefreshDue(ctx); n+failed != 0 || refreshCalls(e2) != 0 {
			t.Fatal("refreshed a token far from expiry")
		}
	})
}

func TestRefresher_RefreshDue_Cancelled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("Skipped", func(t *testing.T) {
		e := newEnv(t, options{})
		e.authorizeDue(t)
		e.cancel(t, time.Now().Add(time.Second).UnixMilli())
		if n, failed, err := e.svc.Refresher(outbound.RefresherConfig{}).RefreshDue(ctx); n+failed != 0 || err != nil {
			t.Fatalf("%d %d %v", n, failed, err)
		}
		if refreshCalls(e) != 0 {
			t.Fatal("a cancelled authorization was refreshed")
		}
	})
	t.Run("DuringRefresh", func(t *testing.T) {
		// The cancellation lands while Alipay is answering the refresh:
		// the refreshed tokens are dropped, the authorization stays
		// cancelled.
		e := newEnv(t, options{})
		e.authorizeDue(t)
		e.sim.Fail(tokenApp, openapisim.Fault{Delay: 500 * time.Millisecond})
		done := make(chan int)
		go func() {
			n, _, _ := e.svc.Refresher(outbound.RefresherConfig{}).RefreshDue(ctx)
			done <- n
		}()
		time.Sleep(150 * time.Millisecond)
		e.cancel(t, time.Now().Add(time.Second).UnixMilli())
		if n := <-done; n != 0 {
			t.Fatalf("refreshed %d", n)
		}
		if status, token := storedToken(t, e, testkit.MerchantAppID); status != "cancelled" || token != "" {
			t.Fatalf("%s %q", status, token)
		}
	})
}

func TestRefresher_RefreshDue_Failure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	old := e.authorizeDue(t)
	e.sim.Fail(tokenApp, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "isv.refresh-token-invalid", SubMsg: "无效"})
	r := e.svc.Refresher(outbound.RefresherConfig{RetryAfter: time.Hour})
	if n, failed, err := r.RefreshDue(ctx); n != 0 || failed != 1 || err != nil {
		t.Fatalf("%d %d %v", n, failed, err)
	}
	var reason string
	if err := e.db.Pool.QueryRow(ctx, `SELECT refresh_error FROM authorizations`).Scan(&reason); err != nil || reason == "" {
		t.Fatalf("refresh_error %q %v", reason, err)
	}
	if _, token := storedToken(t, e, testkit.MerchantAppID); token != old {
		t.Fatal("a failed refresh changed the token")
	}
	if n, failed, _ := r.RefreshDue(ctx); n+failed != 0 {
		t.Fatal("retried before RetryAfter")
	}
}

// TestRefresher_RefreshDue_Ordering: a refresh moves the authorization's
// ordering to its call's start less the clock skew: the grant refreshed,
// delivered again, and an older grant arriving late are stale; a
// cancellation made after the call started applies, though Alipay's clock
// dates it a little before.
func TestRefresher_RefreshDue_Ordering(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := now.Add(-2 * time.Hour)
	e := newEnv(t, options{now: func() time.Time { return clock }})
	ctx := context.Background()
	e.authorizeDue(t) // through the flow, two hours ago: tokens Alipay knows
	token, refresh := e.sim.Tokens(testkit.AppID, testkit.MerchantAppID)
	granted := now.Add(-90 * time.Minute).UnixMilli()
	if out := e.grant(t, "2023010100000000001", granted, token, refresh); out.Status != notify.StatusApplied {
		t.Fatalf("%+v", out)
	}
	clock = now // the call starts now; the skew is 5 minutes
	if n, _, err := e.svc.Refresher(outbound.RefresherConfig{}).RefreshDue(ctx); n != 1 || err != nil {
		t.Fatalf("%d %v", n, err)
	}
	refreshed, _ := e.sim.Tokens(testkit.AppID, testkit.MerchantAppID)

	t.Run("OK", func(t *testing.T) {
		var (
			at int64
			id string
		)
		if err := e.db.Pool.QueryRow(ctx, `SELECT event_at, event_notify_id FROM authorizations`).Scan(&at, &id); err != nil {
			t.Fatal(err)
		}
		if at != now.Add(-5*time.Minute).UnixMilli() || !strings.HasPrefix(id, "refresh:") {
			t.Fatalf("ordering (%d, %q); want (%d, refresh:...)", at, id, now.Add(-5*time.Minute).UnixMilli())
		}
	})
	t.Run("StaleGrantAgain", func(t *testing.T) {
		if out := e.grant(t, "2023010100000000002", granted, token, refresh); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
		if _, stored := storedToken(t, e, testkit.MerchantAppID); stored != refreshed {
			t.Fatal("the refreshed grant, delivered again, put the old tokens back")
		}
	})
	t.Run("StaleOlderGrantLate", func(t *testing.T) {
		if out := e.grant(t, "2023010100000000003", now.Add(-6*time.Minute).UnixMilli(), "late-token", "late-refresh"); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
		if _, stored := storedToken(t, e, testkit.MerchantAppID); stored != refreshed {
			t.Fatal("a grant from before the refresh overwrote its tokens")
		}
	})
	t.Run("CancelAfterCallStart", func(t *testing.T) {
		// Made after the call started, dated 2 minutes before by Alipay's
		// lagging clock.
		if out := e.cancel(t, now.Add(-2*time.Minute).UnixMilli()); out.Status != notify.StatusApplied {
			t.Fatalf("%+v", out)
		}
		if status, stored := storedToken(t, e, testkit.MerchantAppID); status != "cancelled" || stored != "" {
			t.Fatalf("%s %q", status, stored)
		}
	})
}

// TestRefresher_RefreshDue_RotatedKey: after TOKEN_ENCRYPTION_KEY is
// rotated (the old key kept as an old key), the tokens sealed under the
// old key are used and refreshed; the refreshed ones are sealed under the
// new key alone.
func TestRefresher_RefreshDue_RotatedKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{}) // seals with testkit.Sealer's key
	ctx := context.Background()
	e.authorizeDue(t)
	oldKey, newKey := testkit.TokenKey, testkit.OtherTokenKey // testkit.Sealer's, and a new one
	rotated := testkit.SealerOf(t, newKey, oldKey)
	newOnly := testkit.SealerOf(t, newKey)
	svc := e.serviceWith(t, rotated)
	t.Run("OK", func(t *testing.T) {
		if _, _, err := svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatalf("a token under the old key: %v", err)
		}
		if n, failed, err := svc.Refresher(outbound.RefresherConfig{}).RefreshDue(ctx); n != 1 || failed != 0 || err != nil {
			t.Fatalf("%d %d %v", n, failed, err)
		}
		if _, _, err := e.serviceWith(t, newOnly).SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatalf("the refreshed token is not under the new key: %v", err)
		}
	})
	t.Run("ErrOldKeyAlone", func(t *testing.T) {
		// The tokens are under the new key now: the old key alone cannot
		// open them.
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.EINTERNAL, "token_unreadable")
	})
}

// TestRefresher_RefreshDue_OtherMerchant: an answer whose tokens name
// another merchant app is refused, as a failed refresh; the tokens stay.
func TestRefresher_RefreshDue_OtherMerchant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	old := e.authorizeDue(t)
	const other = "2021000000000888"
	e.sim.Fail(tokenApp, openapisim.Fault{AuthAppID: other})
	t.Run("ErrOtherMerchant", func(t *testing.T) {
		if n, failed, err := e.svc.Refresher(outbound.RefresherConfig{RetryAfter: time.Hour}).RefreshDue(ctx); n != 0 || failed != 1 || err != nil {
			t.Fatalf("%d %d %v", n, failed, err)
		}
		if refreshCalls(e) != 1 {
			t.Fatal("Alipay was not asked")
		}
		var reason string
		if err := e.db.Pool.QueryRow(ctx, `SELECT refresh_error FROM authorizations WHERE auth_app_id = $1`, testkit.MerchantAppID).Scan(&reason); err != nil ||
			!strings.Contains(reason, "carries tokens for "+other+" only") {
			t.Fatalf("refresh_error %q %v", reason, err)
		}
		if status, token := storedToken(t, e, testkit.MerchantAppID); status != "authorized" || token != old {
			t.Fatalf("%s: the token changed", status)
		}
		var rows int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM authorizations WHERE auth_app_id = $1`, other).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("%d rows for %s (%v)", rows, other, err)
		}
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatalf("the kept token does not work: %v", err)
		}
	})
}

// TestRefresher_RefreshDue_Replicas: refreshers running at once refresh
// each authorization once.
func TestRefresher_RefreshDue_Replicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	e.sim.SetTokenLifetimes(3600, 7200)
	const merchants = 6
	for i := 0; i < merchants; i++ {
		code := e.sim.IssueCode(testkit.AppID, fmt.Sprintf("20210000000010%02d", i), "2088000000000999")
		if _, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{AppID: testkit.AppID, Code: code, State: e.state(t, "")}); err != nil {
			t.Fatal(err)
		}
	}
	e.sim.Fail(tokenApp, openapisim.Fault{Delay: 100 * time.Millisecond})
	var refreshed atomic.Int64
	testkit.Concurrently(3, func(int) {
		n, _, err := e.svc.Refresher(outbound.RefresherConfig{RetryAfter: time.Hour}).RefreshDue(ctx)
		if err != nil {
			t.Error(err)
		}
		refreshed.Add(int64(n))
	})
	if total := refreshed.Load(); total != merchants || refreshCalls(e) != merchants {
		t.Fatalf("refreshed %d with %d calls; want %d each", total, refreshCalls(e), merchants)
	}
}

func TestRefresher_Run(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	e.authorizeDue(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.svc.Refresher(outbound.RefresherConfig{Interval: 20 * time.Millisecond}).Run(ctx)
		close(done)
	}()
	testkit.Poll(5*time.Second, func() bool { return refreshCalls(e) > 0 })
	cancel()
	<-done
	if refreshCalls(e) == 0 {
		t.Fatal("Run refreshed nothing")
	}
}
