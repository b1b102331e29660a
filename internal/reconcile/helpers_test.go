package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// env is a database, a simulator of Alipay and the outbound service
// calling it, for reconcilers to share.
type env struct {
	sim   *openapisim.Sim
	db    *postgres.DB
	svc   *outbound.Service
	app   *alipay.App
	calls *callLog
}

// callLog records when each OpenAPI request left, and runs the hook set
// for a method (once) before its request goes: what happens elsewhere
// after the gateway read what it sends (a token) and before Alipay
// answers.
type callLog struct {
	mu    sync.Mutex
	at    []time.Time
	hooks map[string]func()
}

func (l *callLog) RoundTrip(r *http.Request) (*http.Response, error) {
	var method string
	if r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		method = form.Get("method")
	}
	if method == "" {
		method = r.URL.Query().Get("method")
	}
	l.mu.Lock()
	l.at = append(l.at, time.Now())
	hook := l.hooks[method]
	delete(l.hooks, method)
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// before has the next request of method wait for fn to run first.
func (l *callLog) before(method string, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hooks == nil {
		l.hooks = map[string]func(){}
	}
	l.hooks[method] = fn
}

func (l *callLog) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}

func newEnv(t *testing.T, timeout time.Duration) *env {
	t.Helper()
	app := testkit.KeyApp()
	sim := openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.AlipayKey()})
	t.Cleanup(sim.Close)
	db := pgtest.New(t)
	e := &env{sim: sim, db: db, app: app, calls: &callLog{}}
	e.svc = e.service(t, timeout, nil)
	return e
}

// service returns an outbound service on e's database and simulator, on
// clock now (time.Now when nil): another replica.
func (e *env) service(t *testing.T, timeout time.Duration, now func() time.Time) *outbound.Service {
	t.Helper()
	svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{e.app}, GatewayURL: e.sim.URL(), Store: e.db, Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t), Timeout: timeout, Transport: e.calls, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// reconciler returns a Reconciler on e with quick timings, changed by tweak.
func (e *env) reconciler(t *testing.T, tweak func(*reconcile.Config)) *reconcile.Reconciler {
	t.Helper()
	cfg := reconcile.Config{Store: e.db, Alipay: e.svc, Limiter: e.db, AppIDs: e.svc.AppIDs(), Poll: 20 * time.Millisecond,
		Lease: 30 * time.Second, RateLimitBackoff: 10 * time.Millisecond, Logger: testkit.Logger(t)}
	if tweak != nil {
		tweak(&cfg)
	}
	return reconcile.New(cfg)
}

// authorize has merchant authorize e's app through the authorization flow.
func (e *env) authorize(t *testing.T, merchant string) {
	t.Helper()
	e.authorizeWith(t, e.svc, merchant)
}

// authorizeAt has merchant authorize e's app through the authorization
// flow at the time at: the grant is dated then.
func (e *env) authorizeAt(t *testing.T, merchant string, at time.Time) {
	t.Helper()
	e.authorizeWith(t, e.service(t, 2*time.Second, func() time.Time { return at }), merchant)
}

func (e *env) authorizeWith(t *testing.T, svc *outbound.Service, merchant string) {
	t.Helper()
	link, err := svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: "https://gw.example.com/alipay/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	grants, err := svc.CompleteAuthorization(context.Background(), outbound.Callback{
		Code: e.sim.IssueCode(e.app.ID, merchant, "2088"+merchant[4:]), State: link.State})
	if err != nil || len(grants) != 1 || !grants[0].Applied {
		t.Fatalf("authorize %s: %+v %v", merchant, grants, err)
	}
}

// audit ingests an audit notification (method) of miniAppID's version at
// ts (ms) and returns its outcome.
func (e *env) audit(t *testing.T, method, miniAppID, version string, ts int64) notify.Outcome {
	t.Helper()
	biz := fmt.Sprintf(`{"mini_app_id":%q,"mini_app_version":%q,"audit_reason":"from a notification"}`, miniAppID, version)
	n := testkit.Note(method, biz, ts)
	out, err := e.db.Ingest(context.Background(), testkit.Decide(t, n))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// grant ingests an authorization notification (open_app_auth_notify) of
// merchant with token, authorized at at (ms), and returns its outcome.
func (e *env) grant(t *testing.T, merchant, token string, at int64) notify.Outcome {
	t.Helper()
	biz := fmt.Sprintf(`{"detail":{"app_id":%q,"auth_app_id":%q,"auth_time":%d,"app_auth_token":%q,"app_refresh_token":"refresh-%s",`+
		`"expires_in":"31536000","re_expires_in":32140800,"user_id":"2088%s"}}`, e.app.ID, merchant, at, token, token, merchant[4:])
	out, err := e.db.Ingest(context.Background(), testkit.Decide(t, testkit.Note(notify.MethodAuthGranted, biz, at)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// token returns the app_auth_token stored for merchant, opened; "" when
// there is none.
func (e *env) token(t *testing.T, merchant string) string {
	t.Helper()
	var sealed []byte
	_ = e.db.Pool.QueryRow(context.Background(), `SELECT app_auth_token FROM authorizations WHERE app_id = $1 AND auth_app_id = $2`,
		e.app.ID, merchant).Scan(&sealed)
	if sealed == nil {
		return ""
	}
	token, err := testkit.Sealer(t).Open(sealed, notify.TokenOwner(e.app.ID, merchant))
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// version returns a stored version's audit status and reason ("" when
// there is none).
func (e *env) version(t *testing.T, miniAppID, version string) (status, reason string) {
	t.Helper()
	_ = e.db.Pool.QueryRow(context.Background(), `SELECT audit_status, audit_reason FROM mini_app_versions
        WHERE mini_app_id = $1 AND mini_app_version = $2`, miniAppID, version).Scan(&status, &reason)
	return status, reason
}

// count runs a count(*) query.
func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// runAll starts a run of every merchant with r and works it to its end.
func (e *env) runAll(t *testing.T, r *reconcile.Reconciler) *view.ReconcileRun {
	t.Helper()
	run, err := r.Start(context.Background(), notify.ScopeAll, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return e.finish(t, r, run.ID)
}

// runMerchant starts a run of merchant with r and works it to its end.
func (e *env) runMerchant(t *testing.T, r *reconcile.Reconciler, merchant string) *view.ReconcileRun {
	t.Helper()
	run, err := r.Start(context.Background(), notify.ScopeMerchant, merchant, "")
	if err != nil {
		t.Fatal(err)
	}
	return e.finish(t, r, run.ID)
}

// finish works run id with r until it is finished and returns it.
func (e *env) finish(t *testing.T, r *reconcile.Reconciler, id int64) *view.ReconcileRun {
	t.Helper()
	if _, err := r.Work(context.Background()); err != nil {
		t.Fatal(err)
	}
	run, err := e.db.ReconcileRun(context.Background(), id)
	if err != nil || run.Status != notify.RunFinished {
		t.Fatalf("run %d: %+v %v", id, run, err)
	}
	return run
}

// errorKinds returns the kinds of a run's errors.
func errorKinds(run *view.ReconcileRun) map[string]int {
	out := map[string]int{}
	for _, e := range run.ErrorLog {
		out[e.Kind]++
	}
	return out
}

const (
	merchantA = "2021000000000301"
	merchantB = "2021000000000302"
)
