package reconcile_test

import (
	"context"
	"fmt"
	"net/http"
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

// callLog records when each OpenAPI request left, by method.
type callLog struct {
	mu sync.Mutex
	at []time.Time
}

func (l *callLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.at = append(l.at, time.Now())
	l.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
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
	calls := &callLog{}
	svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{app}, GatewayURL: sim.URL(), Store: db, Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t), Timeout: timeout, Transport: calls})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, db: db, svc: svc, app: app, calls: calls}
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
	link, err := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: "https://gw.example.com/alipay/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	grants, err := e.svc.CompleteAuthorization(context.Background(), outbound.Callback{
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
