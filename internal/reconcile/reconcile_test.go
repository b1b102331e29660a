package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

// receiver is a real webhook endpoint: it verifies each delivery with the
// endpoint's secret and keeps the events by type.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	got    []notify.StoredEvent
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		key, _ := stdwebhook.ParseSecret(rc.secret)
		if err := stdwebhook.Verify(r.Header, body, time.Now(), key); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev notify.StoredEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		rc.got = append(rc.got, ev)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) events(typ string) []notify.StoredEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []notify.StoredEvent
	for _, ev := range rc.got {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// TestReconciler_RepairsLostNotification: a version audit whose
// notification never arrived is repaired from Alipay's answer, recorded as
// drift, in the audit history, and its event is in the feed and delivered
// to a webhook endpoint; a second run finds nothing to repair.
func TestReconciler_RepairsLostNotification(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	e.authorize(t, merchantA)
	// 1.0.0 passed (its notification arrived); 1.1.0 was rejected, and its
	// notification never arrived.
	e.audit(t, notify.MethodAuditPassed, merchantA, "1.0.0", time.Now().Add(-48*time.Hour).UnixMilli())
	e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.0.0", Status: "RELEASE"})
	e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.1.0", Status: "AUDIT_REJECT", RejectReason: "服务类目不符",
		BaseAudit: "REJECT", BaseAuditRecord: json.RawMessage(`{"audit_images":["https://img/1.png"],"memos":[{"memo":"服务类目不符"}]}`)})

	rc := newReceiver(t)
	ep, err := (&webhook.Admin{AdminStore: e.db}).Create(ctx, notify.EndpointChange{URL: &rc.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.secret = ep.Secret
	rc.mu.Unlock()
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	go webhook.New(webhook.Config{Store: e.db, Logger: testkit.Logger(t), Poll: 20 * time.Millisecond, Refresh: 50 * time.Millisecond}).Run(dctx)

	r := e.reconciler(t, nil)
	before := time.Now()
	run := e.runAll(t, r)

	t.Run("OK", func(t *testing.T) {
		if run.Targets != 1 || run.Repaired != 1 || run.Errors != 0 || run.Checked != 3 {
			t.Fatalf("run %+v", run)
		}
		if status, reason := e.version(t, merchantA, "1.1.0"); status != notify.AuditRejected || reason != "服务类目不符" {
			t.Fatalf("1.1.0: %s %q", status, reason)
		}
		m, err := e.db.MiniApp(ctx, merchantA)
		if err != nil || m.AuditStatus != notify.AuditRejected || m.MiniAppVersion != "1.1.0" || m.LastReconciledAt == nil || m.LastReconciledAt.Before(before) {
			t.Fatalf("mini-app %+v %v", m, err)
		}
		if string(m.Versions[0].BaseAuditReason) == "null" {
			t.Fatal("the base audit's reasons were not kept")
		}
		a, err := e.db.Authorization(ctx, e.app.ID, merchantA)
		if err != nil || a.LastReconciledAt == nil || a.Status != "authorized" {
			t.Fatalf("authorization %+v %v", a, err)
		}
	})
	t.Run("Drift", func(t *testing.T) {
		ds, _, err := e.db.Drift(ctx, view.DriftFilter{MiniAppID: merchantA})
		if err != nil || len(ds) != 1 {
			t.Fatalf("%+v %v", ds, err)
		}
		d := ds[0]
		if d.Kind != notify.DriftMiniAppVersion || d.Entity != merchantA+"@1.1.0" || d.Field != "audit_status" || d.Before != nil ||
			d.After != notify.AuditRejected || d.Source != "reconcile" || d.RunID != run.ID || d.ObservedAt.Before(before.Add(-5*time.Minute-time.Second)) || d.ObservedAt.After(before.Add(-4*time.Minute)) ||
			d.NotifyID != notify.RepairID(run.ID, notify.DriftMiniAppVersion, merchantA+"@1.1.0") {
			t.Fatalf("%+v", d)
		}
		h, err := e.db.AuditHistory(ctx, merchantA)
		if err != nil || len(h) != 2 || h[0].MsgMethod != notify.MethodReconcile || !h[0].Applied || h[0].NotifyID != d.NotifyID {
			t.Fatalf("history %+v %v", h, err)
		}
	})
	t.Run("Event", func(t *testing.T) {
		page, err := e.db.Events(ctx, view.EventFilter{Types: []string{notify.EventMiniAppAuditRejected}})
		if err != nil || len(page.Items) != 1 {
			t.Fatalf("feed %+v %v", page, err)
		}
		ev := page.Items[0]
		var data struct {
			MiniAppID   string `json:"mini_app_id"`
			Version     string `json:"version"`
			AuditStatus string `json:"audit_status"`
			AuditReason string `json:"audit_reason"`
		}
		if err := json.Unmarshal(ev.Data, &data); err != nil || data.MiniAppID != merchantA || data.Version != "1.1.0" ||
			data.AuditStatus != notify.AuditRejected || data.AuditReason != "服务类目不符" || !strings.HasPrefix(ev.NotifyID, "reconcile:") {
			t.Fatalf("%+v %s", ev, ev.Data)
		}
		testkit.Eventually(t, 10*time.Second, func() bool { return len(rc.events(notify.EventMiniAppAuditRejected)) == 1 })
		if got := rc.events(notify.EventMiniAppAuditRejected)[0]; got.ID != ev.ID {
			t.Fatalf("delivered %+v, want %s", got, ev.ID)
		}
	})
	t.Run("OKSecondRunRepairsNothing", func(t *testing.T) {
		again := e.runAll(t, r)
		if again.Repaired != 0 || again.Errors != 0 {
			t.Fatalf("%+v", again)
		}
		if n := e.count(t, `SELECT count(*) FROM events WHERE type = $1`, notify.EventMiniAppAuditRejected); n != 1 {
			t.Fatalf("%d events", n)
		}
	})
}

// TestReconciler_NothingDelivered: a mini-app the gateway never heard of,
// reconciled on demand, gets its state from Alipay's answer alone.
func TestReconciler_NothingDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	e.authorize(t, merchantA)
	e.sim.SetVersion(merchantA, openapisim.Version{Version: "0.1.0", Status: "WAIT_RELEASE"})
	r := e.reconciler(t, nil)

	t.Run("OKAllSkipsUnknownMiniApps", func(t *testing.T) {
		run := e.runAll(t, r)
		if run.Checked != 1 || run.Repaired != 0 || len(e.sim.Calls(openapisim.MethodMiniVersionList)) != 0 {
			t.Fatalf("%+v", run)
		}
	})
	t.Run("OKScoped", func(t *testing.T) {
		run, err := r.Start(ctx, notify.ScopeMiniApp, merchantA, "")
		if err != nil {
			t.Fatal(err)
		}
		run = e.finish(t, r, run.ID)
		if run.Repaired != 1 {
			t.Fatalf("%+v", run)
		}
		m, err := e.db.MiniApp(ctx, merchantA)
		if err != nil || m.AuditStatus != notify.AuditPassed || m.MiniAppVersion != "0.1.0" || m.AppID != e.app.ID {
			t.Fatalf("%+v %v", m, err)
		}
		if n := e.count(t, `SELECT count(*) FROM events WHERE type = $1`, notify.EventMiniAppAuditPassed); n != 1 {
			t.Fatalf("%d events", n)
		}
	})
	t.Run("OKOwnMiniApp", func(t *testing.T) {
		e.sim.SetVersion(e.app.ID, openapisim.Version{Version: "3.0.0", Status: "BASE_AUDIT_PASS"})
		run, err := r.Start(ctx, notify.ScopeMiniApp, e.app.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if run = e.finish(t, r, run.ID); run.Repaired != 1 || run.Checked != 1 {
			t.Fatalf("%+v", run)
		}
		m, err := e.db.MiniApp(ctx, e.app.ID)
		if err != nil || m.AuditStatus != notify.BaseAuditPassed || m.AppID != e.app.ID {
			t.Fatalf("%+v %v", m, err)
		}
		calls := e.sim.Calls(openapisim.MethodMiniVersionList)
		if calls[len(calls)-1].Params.Get("app_auth_token") != "" {
			t.Fatal("the ISV's own mini-app was asked with a merchant's token")
		}
		// Now that it has state, runs of every merchant check it too.
		if run := e.runAll(t, r); run.Targets != 2 {
			t.Fatalf("%+v", run)
		}
	})
	t.Run("ErrScope", func(t *testing.T) {
		for _, c := range []struct{ scope, id, code string }{
			{"everything", "", notify.EINVALID}, {notify.ScopeAll, merchantA, notify.EINVALID}, {notify.ScopeMerchant, "", notify.EINVALID},
			{notify.ScopeMerchant, "2021000000009999", notify.ENOTFOUND},
		} {
			if _, err := r.Start(ctx, c.scope, c.id, ""); notify.ErrorCode(err) != c.code {
				t.Errorf("%s %q: %v; want %s", c.scope, c.id, err, c.code)
			}
		}
	})
}

// TestReconciler_Ordering: a repair is dated at the query: a notification
// newer than the query is never overwritten by it, whether it was stored
// before the run or arrived while the query was under way, and a
// notification dated after the repair overwrites it.
func TestReconciler_Ordering(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	e.authorize(t, merchantA)
	r := e.reconciler(t, nil)

	t.Run("OKNewerStoredNotificationKept", func(t *testing.T) {
		// Alipay's clock is ahead: the notification is dated after the
		// query that is about to answer something else.
		e.audit(t, notify.MethodAuditPassed, merchantA, "2.0.0", time.Now().Add(time.Minute).UnixMilli())
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "2.0.0", Status: "AUDIT_REJECT"})
		run := e.runAll(t, r)
		if status, _ := e.version(t, merchantA, "2.0.0"); status != notify.AuditPassed || run.Repaired != 0 {
			t.Fatalf("%s %+v", status, run)
		}
	})
	t.Run("OKNotificationDuringQueryKept", func(t *testing.T) {
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "2.0.0", Status: "AUDIT_REJECT"})
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "2.1.0", Status: "AUDIT_REJECT"})
		// The passed notification of 2.1.0 arrives while Alipay answers
		// its detail query (dated after the query was sent).
		slow := &racing{Alipay: e.svc, version: "2.1.0", during: func() {
			time.Sleep(2 * time.Millisecond)
			e.audit(t, notify.MethodAuditPassed, merchantA, "2.1.0", time.Now().UnixMilli())
		}}
		r := e.reconciler(t, func(c *reconcile.Config) { c.Alipay = slow })
		run := e.runAll(t, r)
		if status, _ := e.version(t, merchantA, "2.1.0"); status != notify.AuditPassed || run.Repaired != 0 {
			t.Fatalf("%s %+v", status, run)
		}
	})
	t.Run("OKLaterNotificationWins", func(t *testing.T) {
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "2.1.0", Status: "WAIT_RELEASE"})
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "2.2.0", Status: "AUDIT_REJECT", RejectReason: "截图不清晰"})
		run := e.runAll(t, r)
		if status, _ := e.version(t, merchantA, "2.2.0"); status != notify.AuditRejected || run.Repaired != 1 {
			t.Fatalf("%s %+v", status, run)
		}
		// Resubmitted and passed after the query: its notification wins.
		if out := e.audit(t, notify.MethodAuditPassed, merchantA, "2.2.0", time.Now().Add(time.Second).UnixMilli()); out.Status != notify.StatusApplied {
			t.Fatalf("%+v", out)
		}
		// An older one, delivered late, does not.
		if out := e.audit(t, notify.MethodAuditRejected, merchantA, "2.2.0", time.Now().Add(-time.Hour).UnixMilli()); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
		if status, _ := e.version(t, merchantA, "2.2.0"); status != notify.AuditPassed {
			t.Fatal(status)
		}
	})
	t.Run("OKOlderVersionKeepsAppState", func(t *testing.T) {
		// 2.2.0 is the newest and passed; a lost rejection of 1.9.0 is
		// repaired in the version only.
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "2.2.0", Status: "WAIT_RELEASE"})
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.9.0", Status: "AUDIT_REJECT"})
		was, _ := e.db.MiniApp(ctx, merchantA)
		run := e.runAll(t, r)
		if status, _ := e.version(t, merchantA, "1.9.0"); status != notify.AuditRejected || run.Repaired != 1 {
			t.Fatalf("%s %+v", status, run)
		}
		m, _ := e.db.MiniApp(ctx, merchantA)
		if m.AuditStatus != was.AuditStatus || m.MiniAppVersion != was.MiniAppVersion || m.AuditStatus != notify.AuditPassed {
			t.Fatalf("%+v; was %+v", m, was)
		}
	})
}

// racing is an Alipay whose version detail answers only after during has
// run.
type racing struct {
	reconcile.Alipay
	version string
	during  func()
	once    sync.Once
}

func (a *racing) MiniVersionDetail(ctx context.Context, appID, authAppID, version, bundleID string) (*outbound.MiniVersionDetail, error) {
	d, err := a.Alipay.MiniVersionDetail(ctx, appID, authAppID, version, bundleID)
	if version == a.version {
		a.once.Do(a.during)
	}
	return d, err
}

// TestReconciler_InvalidAuthorization: an authorization Alipay reports
// invalid (its cancellation never arrived) becomes cancelled, its tokens
// wiped and no longer used, with its drift and event; its versions are not
// asked.
func TestReconciler_InvalidAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	// A authorized an hour ago (a grant within the clock skew allowed
	// before the query would be newer than the observation).
	e.authorizeAt(t, merchantA, time.Now().Add(-time.Hour))
	e.authorize(t, merchantB)
	e.audit(t, notify.MethodAuditPassed, merchantA, "1.0.0", time.Now().Add(-time.Hour).UnixMilli())
	e.sim.Invalidate(e.app.ID, merchantA)
	r := e.reconciler(t, nil)
	run := e.runAll(t, r)

	t.Run("OK", func(t *testing.T) {
		if run.Targets != 2 || run.Repaired != 1 || run.Errors != 0 {
			t.Fatalf("%+v", run)
		}
		a, err := e.db.Authorization(ctx, e.app.ID, merchantA)
		if err != nil || a.Status != "cancelled" || a.HasToken || a.CancelledAt == nil {
			t.Fatalf("%+v %v", a, err)
		}
		if b, _ := e.db.Authorization(ctx, e.app.ID, merchantB); b.Status != "authorized" {
			t.Fatalf("%+v", b)
		}
		ds, _, _ := e.db.Drift(ctx, view.DriftFilter{Kind: notify.DriftAuthorization})
		if len(ds) != 1 || ds[0].AuthAppID != merchantA || *ds[0].Before != "authorized" || ds[0].After != "cancelled" {
			t.Fatalf("%+v", ds)
		}
		if n := e.count(t, `SELECT count(*) FROM events WHERE type = $1 AND notify_id LIKE 'reconcile:%'`, notify.EventAuthorizationCancelled); n != 1 {
			t.Fatalf("%d events", n)
		}
		if n := len(e.sim.Calls(openapisim.MethodMiniVersionList)); n != 0 {
			t.Fatalf("%d version queries with an invalid token", n)
		}
	})
	t.Run("OKTokenNoLongerUsed", func(t *testing.T) {
		n := e.sim.Requests()
		_, _, err := e.svc.SendTemplateMessage(ctx, outbound.TemplateMessage{AuthAppID: merchantA, ToUserID: "2088000000000001",
			UserTemplateID: "tpl", Page: "pages/index", Data: []byte(`{"keyword1":{"value":"x"}}`)}, "")
		if notify.ErrorCode(err) != notify.ECONFLICT || e.sim.Requests() != n {
			t.Fatalf("%v", err)
		}
		due, err := e.db.ClaimRefresh(ctx, e.svc.AppIDs(), time.Now().Add(100*365*24*time.Hour), 0)
		if err != nil || due == nil || due.AuthAppID != merchantB {
			t.Fatalf("the refresher would take %+v %v", due, err)
		}
	})
	t.Run("OKNotCheckedAgain", func(t *testing.T) {
		again := e.runAll(t, r)
		if again.Targets != 1 {
			t.Fatalf("%+v", again)
		}
	})
}

// TestReconciler_Faults: an error answer, a timeout, an answer whose
// signature does not verify and an unknown status change nothing and are
// recorded on the run; a merchant whose token Alipay refuses is reported
// and not tried again within the run.
func TestReconciler_Faults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 300*time.Millisecond)
	e.authorize(t, merchantA)
	e.audit(t, notify.MethodAuditPassed, merchantA, "1.0.0", time.Now().Add(-time.Hour).UnixMilli())
	e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.0.0", Status: "AUDIT_REJECT"})
	r := e.reconciler(t, nil)
	// state returns what a check could change.
	state := func() string {
		status, _ := e.version(t, merchantA, "1.0.0")
		a, _ := e.db.Authorization(context.Background(), e.app.ID, merchantA)
		return status + " " + a.Status
	}
	want := notify.AuditPassed + " authorized"

	for _, c := range []struct {
		name, method string
		fault        openapisim.Fault
		kind         string
	}{
		{"ErrBusiness", openapisim.MethodMiniVersionList, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "SYSTEM_ERROR"}, notify.RecErrBusiness},
		{"ErrTimeout", openapisim.MethodMiniVersionDetail, openapisim.Fault{Hang: true}, notify.RecErrUpstream},
		{"ErrBadSign", openapisim.MethodMiniVersionDetail, openapisim.Fault{BadSign: true}, notify.RecErrUpstream},
		{"ErrUnsigned", openapisim.MethodAuthTokenQuery, openapisim.Fault{Unsigned: true}, notify.RecErrUpstream},
		{"ErrHTTP", openapisim.MethodAuthTokenQuery, openapisim.Fault{HTTPStatus: 502}, notify.RecErrUpstream},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.sim.Fail(c.method, c.fault)
			run := e.runAll(t, r)
			if got := state(); got != want || run.Repaired != 0 || run.Errors != 1 || errorKinds(run)[c.kind] != 1 {
				t.Fatalf("%s; run %+v", got, run)
			}
			if e := run.ErrorLog[0]; e.Method != c.method || e.AuthAppID != merchantA {
				t.Fatalf("%+v", e)
			}
		})
	}
	t.Run("ErrUnknownStatus", func(t *testing.T) {
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.0.0", Status: "AUDIT_REJECT", DetailStatus: "PROMOTE_AUDIT_REJECT"})
		run := e.runAll(t, r)
		if got := state(); got != want || run.Repaired != 0 || errorKinds(run)[notify.RecErrUnknownStatus] != 1 {
			t.Fatalf("%s; run %+v", got, run)
		}
		// A stored version listed under no known status.
		e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.0.0", Status: "SOMETHING_NEW"})
		run = e.runAll(t, r)
		if got := state(); got != want || run.Repaired != 0 || errorKinds(run)[notify.RecErrUnknownStatus] != 1 {
			t.Fatalf("%s; run %+v", got, run)
		}
	})
	t.Run("ErrInvalidToken", func(t *testing.T) {
		e.sim.Expire(e.app.ID, merchantA) // Alipay takes the token no more: 20001
		calls := e.sim.Requests()
		run := e.runAll(t, r)
		if got := state(); got != want || run.Errors != 1 || errorKinds(run)[notify.RecErrInvalidToken] != 1 || e.sim.Requests() != calls+1 {
			t.Fatalf("%s; run %+v; %d calls", got, run, e.sim.Requests()-calls)
		}
		if e := run.ErrorLog[0]; e.Code != "20001" || e.SubCode != "aop.app-auth-token-time-out" {
			t.Fatalf("%+v", e)
		}
		// Reported, not retried: the run is over, and working finds nothing.
		if n, err := r.Work(context.Background()); n != 0 || err != nil || e.sim.Requests() != calls+1 {
			t.Fatalf("%d %v", n, err)
		}
	})
}

// TestReconciler_RateLimit: every call takes a token of the ISV app's
// bucket, shared by the replicas: two reconcilers on one database make at
// most the rate's calls in any second, in all; Alipay's 40005 is recorded
// and the call tried again later.
func TestReconciler_RateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	const (
		merchants = 6
		rate      = 10.0
	)
	for i := range merchants {
		m := "20210000000004" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		e.authorize(t, m)
		e.audit(t, notify.MethodAuditPassed, m, "1.0.0", time.Now().Add(-time.Hour).UnixMilli())
		e.sim.SetVersion(m, openapisim.Version{Version: "1.0.0", Status: "RELEASE"})
	}
	e.sim.Fail(openapisim.MethodMiniVersionList, openapisim.Fault{Code: "40005", Msg: "Call Limited"})
	replicas := []*reconcile.Reconciler{
		e.reconciler(t, func(c *reconcile.Config) { c.Rate = rate }),
		e.reconciler(t, func(c *reconcile.Config) { c.Rate = rate }),
	}
	run, err := replicas[0].Start(context.Background(), notify.ScopeAll, "", "")
	if err != nil {
		t.Fatal(err)
	}
	first := len(e.calls.times())
	started := time.Now()
	testkit.Concurrently(len(replicas), func(i int) {
		if _, err := replicas[i].Work(context.Background()); err != nil {
			t.Error(err)
		}
	})
	took := time.Since(started)
	run = e.finish(t, replicas[0], run.ID)
	times := e.calls.times()[first:]
	// Two calls per merchant, and the one 40005 answer tried again.
	if len(times) != 2*merchants+1 || run.Errors != 1 || errorKinds(run)[notify.RecErrRateLimited] != 1 {
		t.Fatalf("%d calls; run %+v", len(times), run)
	}
	// The bucket starts with one token (burst 1) and refills at rate:
	// n calls take at least (n-1)/rate, less a little for clocks.
	if min := time.Duration(float64(len(times)-1) / rate * float64(time.Second)); took < min-100*time.Millisecond {
		t.Fatalf("%d calls in %s; the rate allows no fewer than %s", len(times), took, min)
	}
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < time.Second; j++ {
			n++
		}
		if n > int(rate)+2 {
			t.Fatalf("%d calls within a second from call %d; the rate is %v", n, i, rate)
		}
	}
}

// TestReconciler_Replicas: two reconcilers on one database share a run,
// and each merchant is checked once.
func TestReconciler_Replicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	const merchants = 8
	for i := range merchants {
		e.authorize(t, "20210000000005"+string(rune('0'+i/10))+string(rune('0'+i%10)))
	}
	replicas := []*reconcile.Reconciler{e.reconciler(t, nil), e.reconciler(t, nil)}

	t.Run("OKOneScheduledRun", func(t *testing.T) {
		_, _ = e.db.Pool.Exec(context.Background(), `UPDATE reconcile_state SET at = now() - interval '1 day' WHERE name = 'schedule'`)
		for _, r := range []*reconcile.Reconciler{e.reconciler(t, func(c *reconcile.Config) { c.Interval = time.Hour }),
			e.reconciler(t, func(c *reconcile.Config) { c.Interval = time.Hour })} {
			testkit.Concurrently(4, func(int) {
				if err := r.Watch(context.Background(), false); err != nil {
					t.Error(err)
				}
			})
		}
		if n := e.count(t, `SELECT count(*) FROM reconcile_runs WHERE trigger = 'schedule'`); n != 1 {
			t.Fatalf("%d scheduled runs", n)
		}
	})
	t.Run("OKEachMerchantOnce", func(t *testing.T) {
		runs, _, err := e.db.ReconcileRuns(context.Background(), view.RunFilter{})
		if err != nil || len(runs) != 1 {
			t.Fatalf("%+v %v", runs, err)
		}
		done := make([]int, len(replicas))
		testkit.Concurrently(len(replicas), func(i int) {
			var err error
			if done[i], err = replicas[i].Work(context.Background()); err != nil {
				t.Error(err)
			}
		})
		if done[0]+done[1] != merchants {
			t.Fatalf("targets done %v; want %d in all", done, merchants)
		}
		asked := map[string]int{}
		for _, c := range e.sim.Calls(openapisim.MethodAuthTokenQuery) {
			asked[c.Biz["app_auth_token"].(string)]++
		}
		if len(asked) != merchants {
			t.Fatalf("%d merchants asked: %v", len(asked), asked)
		}
		for token, n := range asked {
			if n != 1 {
				t.Fatalf("token %s asked %d times", token, n)
			}
		}
		run, err := e.db.ReconcileRun(context.Background(), runs[0].ID)
		if err != nil || run.Status != notify.RunFinished || run.Checked != merchants {
			t.Fatalf("%+v %v", run, err)
		}
	})
}

// TestReconciler_ResumeAfterKill: a replica that dies in the middle of a
// target (its work stops without a word, as under kill -9) leaves it to
// the next claim once its lease ends; the repairs it made are not made
// again, and the run finishes.
func TestReconciler_ResumeAfterKill(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 5*time.Second)
	ctx := context.Background()
	e.authorize(t, merchantA)
	e.audit(t, notify.MethodAuditPassed, merchantA, "1.0.0", time.Now().Add(-time.Hour).UnixMilli())
	e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.0.0", Status: "AUDIT_REJECT"})
	e.sim.SetVersion(merchantA, openapisim.Version{Version: "1.1.0", Status: "AUDIT_REJECT"})
	// The second detail query (1.1.0's) hangs; the replica dies during it.
	e.sim.Fail(openapisim.MethodMiniVersionDetail, openapisim.Fault{})
	e.sim.Fail(openapisim.MethodMiniVersionDetail, openapisim.Fault{Hang: true})
	lease := 300 * time.Millisecond
	dying := e.reconciler(t, func(c *reconcile.Config) { c.Lease = lease })
	run, err := dying.Start(ctx, notify.ScopeAll, "", "")
	if err != nil {
		t.Fatal(err)
	}
	kctx, kill := context.WithCancel(ctx)
	died := make(chan struct{})
	go func() {
		defer close(died)
		_, _ = dying.Work(kctx)
	}()
	testkit.Eventually(t, 5*time.Second, func() bool { return len(e.sim.Calls(openapisim.MethodMiniVersionDetail)) == 2 })
	kill()
	<-died
	if status, _ := e.version(t, merchantA, "1.0.0"); status != notify.AuditRejected {
		t.Fatalf("the first repair was not made before the kill: %s", status)
	}
	if r, _ := e.db.ReconcileRun(ctx, run.ID); r.Status != notify.RunRunning || r.Repaired != 1 {
		t.Fatalf("%+v", r)
	}

	next := e.reconciler(t, func(c *reconcile.Config) { c.Lease = lease })
	if n, err := next.Work(ctx); n != 0 || err != nil {
		t.Fatalf("claimed a target under lease: %d %v", n, err)
	}
	time.Sleep(lease)
	run = e.finish(t, next, run.ID)
	if run.Repaired != 2 || run.Errors != 0 {
		t.Fatalf("%+v", run)
	}
	if status, _ := e.version(t, merchantA, "1.1.0"); status != notify.AuditRejected {
		t.Fatal(status)
	}
	if n := e.count(t, `SELECT count(*) FROM events WHERE notify_id LIKE 'reconcile:%'`); n != 2 {
		t.Fatalf("%d repair events; want 2", n)
	}
	if n := e.count(t, `SELECT count(*) FROM reconcile_drift`); n != 2 {
		t.Fatalf("%d drift records; want 2", n)
	}
}

// TestReconciler_Watch: outage-triggered runs, started once across
// replicas: after every reconciler was stopped longer than AfterOutage,
// and after this replica was not ready, or refused deliveries and
// accepted none, that long.
func TestReconciler_Watch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	e.authorize(t, merchantA)
	outageRuns := func() int { return e.count(t, `SELECT count(*) FROM reconcile_runs WHERE trigger = 'outage'`) }

	t.Run("OKFleetWasDown", func(t *testing.T) {
		_, _ = e.db.Pool.Exec(ctx, `UPDATE reconcile_state SET at = now() - interval '2 hours' WHERE name = 'heartbeat'`)
		a := e.reconciler(t, func(c *reconcile.Config) { c.AfterOutage = 5 * time.Minute })
		if err := a.Watch(ctx, true); err != nil {
			t.Fatal(err)
		}
		// Another replica starting now finds the heartbeat fresh.
		b := e.reconciler(t, func(c *reconcile.Config) { c.AfterOutage = 5 * time.Minute })
		if err := b.Watch(ctx, true); err != nil {
			t.Fatal(err)
		}
		if n := outageRuns(); n != 1 {
			t.Fatalf("%d outage runs", n)
		}
		runs, _, _ := e.db.ReconcileRuns(ctx, view.RunFilter{Limit: 1})
		if !strings.Contains(runs[0].Reason, "every replica down") || runs[0].Targets != 1 {
			t.Fatalf("%+v", runs[0])
		}
	})
	t.Run("OKNotReadyThenReady", func(t *testing.T) {
		var (
			mu     sync.Mutex
			now    = time.Now()
			health error
		)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		set := func(d time.Duration, err error) { mu.Lock(); now, health = now.Add(d), err; mu.Unlock() }
		r := e.reconciler(t, func(c *reconcile.Config) {
			c.AfterOutage, c.OutageGap, c.Now = 5*time.Minute, time.Nanosecond, clock
			c.Health = []func(context.Context) error{func(context.Context) error { mu.Lock(); defer mu.Unlock(); return health }}
		})
		n := outageRuns()
		for _, step := range []struct {
			d   time.Duration
			err error
		}{{0, nil}, {time.Second, errors.New("websocket of app 2013121700999429: not connected")}, {10 * time.Minute, nil}} {
			set(step.d, step.err)
			if err := r.Watch(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
		if outageRuns() != n+1 {
			t.Fatalf("%d outage runs; want %d", outageRuns(), n+1)
		}
	})
	t.Run("OKRefusingThenAccepting", func(t *testing.T) {
		var (
			mu                sync.Mutex
			now               = time.Now()
			accepted, refused float64
		)
		r := e.reconciler(t, func(c *reconcile.Config) {
			c.AfterOutage, c.OutageGap = 5*time.Minute, time.Nanosecond
			c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			c.Deliveries = func() (float64, float64) { mu.Lock(); defer mu.Unlock(); return accepted, refused }
		})
		n := outageRuns()
		for i := range 8 {
			mu.Lock()
			now = now.Add(time.Minute)
			if i < 7 {
				refused++ // a key mistake: every genuine delivery refused
			} else {
				accepted++
			}
			mu.Unlock()
			if err := r.Watch(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
		if outageRuns() != n+1 {
			t.Fatalf("%d outage runs; want %d", outageRuns(), n+1)
		}
	})
}
