package msgchannel_test

import (
	"context"
	"crypto/rsa"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
	"github.com/alipay-notify-gateway/gateway/internal/msgsim"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// fast are timings short enough for tests.
func fast(cfg *msgchannel.Config) {
	cfg.Backoff = []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond}
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PongTimeout = 2 * time.Second
	cfg.DialTimeout = 3 * time.Second
	cfg.DrainTimeout = 5 * time.Second
}

// newApp is a public-key mode app id (testkit.KeyApp's keys) that signs
// with key (none when nil), delivered as delivery says.
func newApp(id string, key *rsa.PrivateKey, delivery string) *alipay.App {
	a := testkit.KeyApp()
	a.ID, a.PrivateKey, a.Delivery = id, key, delivery
	return a
}

// newSim starts a simulator that knows the app's public key.
func newSim(t *testing.T, platform *rsa.PrivateKey, appIDs ...string) (*msgsim.Server, string) {
	t.Helper()
	apps := map[string]*rsa.PublicKey{}
	for _, id := range appIDs {
		apps[id] = &testkit.AppKey().PublicKey
	}
	sim := msgsim.New(msgsim.Config{Apps: apps, PlatformKey: platform, AckTimeout: time.Second, RetryAfter: 100 * time.Millisecond,
		Logger: testkit.Logger(t).Level(zerolog.InfoLevel)})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return sim, srv.URL
}

// rig is a simulator and a running client for one app on a fresh schema.
type rig struct {
	sim     *msgsim.Server
	db      *postgres.DB
	v       *alipay.Verifier
	client  *msgchannel.Client
	metrics *metrics.Metrics
	stop    func() // stops the client and waits for Run to return
}

type rigOption func(*msgchannel.Config)

// newRig runs a client on db (a fresh schema when nil) through inbox (db
// when nil).
func newRig(t *testing.T, db *postgres.DB, inbox notify.Inbox, opts ...rigOption) *rig {
	t.Helper()
	if db == nil {
		db = pgtest.New(t)
	}
	sim, url := newSim(t, testkit.AlipayKey(), testkit.AppID)
	v := testkit.Verifier(t, newApp(testkit.AppID, testkit.AppKey(), alipay.DeliverWebSocket))
	if inbox == nil {
		inbox = db
	}
	app, _ := v.App(testkit.AppID)
	m, log := metrics.New(), testkit.Logger(t)
	cfg := msgchannel.Config{App: app, Verifier: v, Intake: pipeline(t, inbox, m), Host: url, AllowInsecure: true, Metrics: m, Logger: log}
	fast(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	c, err := msgchannel.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{sim: sim, db: db, v: v, client: c, metrics: cfg.Metrics}
	r.stop = run(t, c.Run)
	return r
}

// pipeline is the intake pipeline over inbox, deciding with every handler
// (a token key set), counting into m.
func pipeline(t *testing.T, inbox notify.Inbox, m *metrics.Metrics) *intake.Pipeline {
	return intake.New(intake.Config{Registry: testkit.Registry(t), Inbox: inbox, Metrics: m, Timeout: 5 * time.Second,
		Logger: testkit.Logger(t)})
}

// run starts fn in a goroutine and returns a func that cancels it and waits
// for it; the test's cleanup calls it too.
func run(t *testing.T, fn func(context.Context) error) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("Run did not return 20 s after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually waits up to 10 s for cond (testkit.Poll), and fails saying
// what it waited for when cond does not come true.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testkit.Poll(10*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// messageSamples are the seed's six messages (the older-style auth-granted
// notification is HTTP only).
func messageSamples() []samples.Sample {
	var out []samples.Sample
	for _, s := range samples.All() {
		if s.Form["msg_method"] != "" {
			out = append(out, s)
		}
	}
	return out
}

// httpIngest stores a sample as the HTTP intake would: signed with the
// platform key, verified by v, ingested into db.
func httpIngest(t *testing.T, v *alipay.Verifier, inbox notify.Inbox, s samples.Sample, notifyID string) notify.Outcome {
	t.Helper()
	f := alipay.Form(s.Form)
	f["notify_id"] = notifyID
	signed := testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV2)
	n, _, err := v.Notification([]byte(signed.Encode()), notify.ChannelHTTP, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, err := inbox.Ingest(context.Background(), testkit.Decide(t, n))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flakyInbox fails the first `fail` Ingest calls with EUNAVAILABLE, as a
// database outage does, then hands the rest to the real inbox.
type flakyInbox struct {
	inner notify.Inbox
	fail  atomic.Int64
	calls atomic.Int64
}

func (f *flakyInbox) Ingest(ctx context.Context, n notify.Decided) (notify.Outcome, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return notify.Outcome{}, &notify.Error{Code: notify.EUNAVAILABLE, Reason: "database_unavailable", Message: "database unavailable: simulated outage"}
	}
	return f.inner.Ingest(ctx, n)
}

// gateInbox blocks every Ingest until release is closed, then hands it to
// the real inbox.
type gateInbox struct {
	inner   notify.Inbox
	entered chan struct{}
	release chan struct{}
}

func (g *gateInbox) Ingest(ctx context.Context, n notify.Decided) (notify.Outcome, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.inner.Ingest(ctx, n)
}

// counter returns a counter's value from the metrics registry.
func counter(t *testing.T, m *metrics.Metrics, name, app string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "app_id" && l.GetValue() == app {
					if mm.GetCounter() != nil {
						return mm.GetCounter().GetValue()
					}
					return mm.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}
