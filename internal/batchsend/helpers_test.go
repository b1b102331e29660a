package batchsend_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

const send = openapisim.MethodTemplateMessageSend

// env is a batch Admin and its Store, on a fresh schema, calling a
// simulator over HTTP through a real outbound Service.
type env struct {
	sim   *openapisim.Sim
	db    *postgres.DB
	svc   *outbound.Service
	admin *batchsend.Admin
	app   *alipay.App
}

type options struct {
	timeout   time.Duration
	transport http.RoundTripper
}

func newEnv(t *testing.T, o options) *env {
	t.Helper()
	app := testkit.KeyApp()
	sim := openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.AlipayKey()})
	t.Cleanup(sim.Close)
	db := pgtest.New(t)
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{app}, GatewayURL: sim.URL(), Store: db, Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t), Timeout: o.timeout, Transport: o.transport})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, db: db, svc: svc, app: app,
		admin: &batchsend.Admin{Store: db, Outbound: svc, Logger: testkit.Logger(t)}}
}

// users returns n distinct user ids, from first.
func users(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("2088%012d", first+i)
	}
	return out
}

// request is a batch of the shared-data template to ids.
func request(ids []string) *batchsend.Request {
	r := &batchsend.Request{UserTemplateID: "tpl1", Page: "pages/index", Data: []byte(`{"keyword1":{"value":"12:00"}}`)}
	for _, id := range ids {
		r.Recipients = append(r.Recipients, batchsend.Recipient{ToUserID: id})
	}
	return r
}

// create stores r and returns its id.
func (e *env) create(t *testing.T, r *batchsend.Request) int64 {
	t.Helper()
	v, _, err := e.admin.Create(context.Background(), r, "")
	if err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// sender is a running Sender.
type sender struct {
	metrics *metrics.Metrics
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// stop stops s and waits until it returned: its calls in flight ended and
// are recorded.
func (s *sender) stop() {
	s.once.Do(s.cancel)
	<-s.done
}

// start runs a Sender of e on store (e.db when nil), as edit configures
// it, until it is stopped or the test ends.
func (e *env) start(t *testing.T, store batchsend.Store, edit func(*batchsend.Config)) *sender {
	t.Helper()
	if store == nil {
		store = e.db
	}
	s := &sender{metrics: metrics.New(), done: make(chan struct{})}
	cfg := batchsend.Config{Store: store, Bucket: e.db, Outbound: e.svc, Logger: testkit.Logger(t), Metrics: s.metrics,
		Concurrency: 4, Poll: 20 * time.Millisecond, RateLimitPause: 20 * time.Millisecond,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
	if edit != nil {
		edit(&cfg)
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { defer close(s.done); batchsend.New(cfg).Run(ctx) }()
	t.Cleanup(s.stop)
	return s
}

// sent is how many sends s counted as sent.
func (s *sender) sent(t *testing.T) float64 {
	t.Helper()
	mfs, err := s.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "alipay_gateway_template_batch_sends_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "sent" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// batch returns batch id as the API shows it.
func (e *env) batch(t *testing.T, id int64) *view.TemplateBatch {
	t.Helper()
	v, err := e.admin.Batch(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wait waits until batch id is status (at most 30s), and returns it.
func (e *env) wait(t *testing.T, id int64, status string) *view.TemplateBatch {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := e.batch(t, id)
		if v.Status == status {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %d is %s, not %s: %+v", id, v.Status, status, v.Counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// until waits (at most 30s) until cond holds.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// count runs a count query.
func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// recipients returns batch id's recipients of status, in upload order.
func (e *env) recipients(t *testing.T, id int64, status string) []*view.BatchRecipient {
	t.Helper()
	var out []*view.BatchRecipient
	after := ""
	for {
		page, next, err := e.admin.Recipients(context.Background(), view.RecipientFilter{BatchID: id, Status: status, After: after, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		after = next
	}
}

// once fails unless every user the simulator got a message for got one.
func (e *env) once(t *testing.T) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range e.sim.Sent() {
		u := m.ToUserID + m.ToOpenID
		if seen[u] {
			t.Fatalf("%s got the message twice", u)
		}
		seen[u] = true
	}
	return seen
}

// events counts the batch's finished events.
func (e *env) events(t *testing.T, id int64) int {
	t.Helper()
	return e.count(t, `SELECT count(*) FROM events WHERE notify_id = $1 AND type = $2`, notify.BatchEventNotifyID(id), notify.EventTemplateBatchFinished)
}

// authorize runs the authorization flow for testkit.MerchantAppID.
func (e *env) authorize(t *testing.T) {
	t.Helper()
	l, err := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: "https://gw.example.com/alipay/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	grants, err := e.svc.CompleteAuthorization(context.Background(), outbound.Callback{
		AppID: e.app.ID, Code: e.sim.IssueCode(e.app.ID, testkit.MerchantAppID, "2088000000000999"), State: l.State,
	})
	if err != nil || len(grants) != 1 || !grants[0].Applied {
		t.Fatalf("authorize: %+v %v", grants, err)
	}
}

// cancelAuthorization ingests the merchant's
// alipay.open.auth.appauth.cancelled, as Alipay sends it.
func (e *env) cancelAuthorization(t *testing.T) {
	t.Helper()
	biz := fmt.Sprintf(`{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000999","app_auth_token":"whatever"}`, e.app.ID, testkit.MerchantAppID)
	n := testkit.Note(notify.MethodAuthCancelled, biz, time.Now().UnixMilli())
	n.AppID = e.app.ID
	if _, err := e.db.Ingest(context.Background(), testkit.Decide(t, n)); err != nil {
		t.Fatal(err)
	}
}

// failingStore is a Store whose outcomes are never recorded: a replica
// that lost the database, or died, before recording what it sent.
type failingStore struct{ batchsend.Store }

func (failingStore) RecordRecipients(context.Context, []notify.RecipientOutcome) (int, error) {
	return 0, notify.Errorf(notify.EUNAVAILABLE, "database_unavailable", "database unavailable: the replica died")
}
