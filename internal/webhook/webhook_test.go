package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

const app = "2021000000000001"

var seq atomic.Int64

// ingest stores n audit notifications of mini-app prefix-i, each making a
// notification.received and a mini_app.audit_passed.
func ingest(t *testing.T, db *postgres.DB, prefix string, n int) {
	t.Helper()
	reg := testkit.Registry(t)
	var ds []notify.Decided
	for i := range n {
		biz := fmt.Sprintf(`{"mini_app_id":"%s-%d","mini_app_version":"1"}`, prefix, i)
		d, err := reg.Decide(&notify.Notification{
			AppID: app, NotifyID: fmt.Sprintf("wh-%d", seq.Add(1)), Method: notify.MethodAuditPassed,
			UTCTimestamp: time.Now().UnixMilli(), BizContent: biz, Params: map[string]string{"biz_content": biz},
			Channel: notify.ChannelHTTP, ContentForm: "v1", ReceivedAt: time.Now(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	for _, r := range db.IngestBatch(context.Background(), ds) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

// receiver is a real HTTP receiver that verifies each delivery and counts
// them by webhook-id; fail, when set, decides how to answer one.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret atomic.Value // string
	mu     sync.Mutex
	got    map[string]int // webhook-id: verified deliveries
	types  map[string]int
	bad    int
	calls  atomic.Int64
	fail   func(n int64, w http.ResponseWriter, r *http.Request) bool
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, got: map[string]int{}, types: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := rc.calls.Add(1)
		if rc.fail != nil && rc.fail(n, w, r) {
			return
		}
		body, _ := io.ReadAll(r.Body)
		key, _ := stdwebhook.ParseSecret(rc.secret.Load().(string))
		if err := stdwebhook.Verify(r.Header, body, time.Now(), key); err != nil {
			rc.mu.Lock()
			rc.bad++
			rc.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev notify.StoredEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get("webhook-id") {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.got[ev.ID]++
		rc.types[ev.Type]++
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// distinct returns how many events arrived, and how many deliveries.
func (rc *receiver) distinct() (events, deliveries int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.got {
		deliveries += n
	}
	return len(rc.got), deliveries
}

func endpoint(t *testing.T, db *postgres.DB, url string, c notify.EndpointChange) *notify.Endpoint {
	t.Helper()
	c.URL = &url
	ep, err := (&webhook.Admin{AdminStore: db}).Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// subscribe registers an endpoint, with c's settings, that posts to rc's
// server at path, and has rc verify what it receives with its secret.
func (rc *receiver) subscribe(t *testing.T, db *postgres.DB, path string, c notify.EndpointChange) *notify.Endpoint {
	t.Helper()
	ep := endpoint(t, db, rc.srv.URL+path, c)
	rc.secret.Store(ep.Secret)
	return ep
}

// run starts a dispatcher with quick timings; it stops when the test ends.
func run(t *testing.T, db *postgres.DB, tweak func(*webhook.Config)) {
	cfg := webhook.Config{
		Store: db, Logger: zerolog.Nop(), Concurrency: 4, Timeout: 500 * time.Millisecond,
		Poll: 20 * time.Millisecond, Refresh: 100 * time.Millisecond,
		Backoff: func(int) time.Duration { return 50 * time.Millisecond },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); webhook.New(cfg).Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDispatcher_Run(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		ep := rc.subscribe(t, db, "/hook", notify.EndpointChange{})
		run(t, db, nil)
		ingest(t, db, "ok", 50)
		eventually(t, 10*time.Second, "100 events delivered", func() bool { n, _ := rc.distinct(); return n == 100 })
		// Results are recorded a few at a time, shortly after the answers.
		eventually(t, 5*time.Second, "no delivery pending", func() bool {
			ds, _, err := db.Deliveries(context.Background(), view.DeliveryFilter{EndpointID: ep.ID, Status: view.DeliveryPending})
			return err == nil && len(ds) == 0
		})
		if rc.types[notify.EventNotificationReceived] != 50 || rc.types[notify.EventMiniAppAuditPassed] != 50 {
			t.Fatalf("%v", rc.types)
		}
	})
	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		other := "2021000000000099"
		rc.subscribe(t, db, "", notify.EndpointChange{EventTypes: &[]string{"mini_app.*"}})
		endpoint(t, db, rc.srv.URL, notify.EndpointChange{AppID: &other}) // takes none of app's
		run(t, db, nil)
		ingest(t, db, "f", 10)
		eventually(t, 10*time.Second, "10 audit events", func() bool { n, _ := rc.distinct(); return n == 10 })
		time.Sleep(200 * time.Millisecond)
		if n, d := rc.distinct(); n != 10 || d != 10 || rc.types[notify.EventMiniAppAuditPassed] != 10 {
			t.Fatalf("%d events, %d deliveries, %v", n, d, rc.types)
		}
	})
	t.Run("FaultyReceiver", func(t *testing.T) {
		// It fails a third of the calls, in every way a receiver can:
		// 5xx, 4xx, a redirect, no answer within the timeout, a dropped
		// connection, an endless body. Every event arrives.
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		rc.fail = func(n int64, w http.ResponseWriter, r *http.Request) bool {
			switch n % 9 {
			case 1:
				http.Error(w, "down", http.StatusServiceUnavailable)
			case 2:
				http.Error(w, "no", http.StatusBadRequest)
			case 4:
				http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
			case 5:
				time.Sleep(700 * time.Millisecond) // past the timeout
				w.WriteHeader(http.StatusNoContent)
			case 7:
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			case 8:
				w.WriteHeader(http.StatusOK) // and a body that never ends
				chunk := []byte(strings.Repeat("x", 4096))
				for i := 0; i < 10000; i++ {
					if _, err := w.Write(chunk); err != nil {
						break
					}
				}
			default:
				return false
			}
			return true
		}
		ep := rc.subscribe(t, db, "", notify.EndpointChange{})
		run(t, db, nil)
		ingest(t, db, "faulty", 40)
		eventually(t, 30*time.Second, "80 events delivered", func() bool { n, _ := rc.distinct(); return n == 80 })
		eventually(t, 5*time.Second, "none pending", func() bool {
			ds, _, err := db.Deliveries(context.Background(), view.DeliveryFilter{EndpointID: ep.ID, Status: view.DeliveryPending})
			return err == nil && len(ds) == 0
		})
		// The reasons are kept.
		reasons := map[string]bool{}
		var rows []string
		r, err := db.Pool.Query(context.Background(), `SELECT error FROM webhook_attempts WHERE error <> ''`)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var e string
			_ = r.Scan(&e)
			rows = append(rows, e)
		}
		for _, e := range rows {
			switch {
			case strings.HasPrefix(e, "HTTP 503"):
				reasons["503"] = true
			case strings.HasPrefix(e, "HTTP 400"):
				reasons["400"] = true
			case strings.HasPrefix(e, "HTTP 302") && strings.Contains(e, "not followed"):
				reasons["302"] = true
			case strings.HasPrefix(e, "no answer within"):
				reasons["timeout"] = true
			case strings.Contains(e, "EOF") || strings.Contains(e, "reset"):
				reasons["closed"] = true
			case strings.Contains(e, "goes on past 64 KiB"):
				reasons["endless"] = true
			}
		}
		if len(reasons) != 6 {
			t.Fatalf("reasons %v of %q", reasons, rows)
		}
		var longest int
		if err := db.Pool.QueryRow(context.Background(), `SELECT max(length(response)) FROM webhook_attempts`).Scan(&longest); err != nil || longest > webhook.ResponseLimit {
			t.Fatalf("kept %d bytes of an answer (%v)", longest, err)
		}
	})
	t.Run("SlowEndpointDelaysNoOther", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		slow, fast := newReceiver(t), newReceiver(t)
		slow.fail = func(int64, http.ResponseWriter, *http.Request) bool { time.Sleep(2 * time.Second); return true }
		endpoint(t, db, slow.srv.URL, notify.EndpointChange{})
		fast.subscribe(t, db, "", notify.EndpointChange{})
		run(t, db, func(c *webhook.Config) { c.Timeout = 5 * time.Second })
		ingest(t, db, "slow", 30)
		// The slow one takes 2 s an attempt, 4 at once: its 60 events need
		// 30 s. The fast one's are all there long before.
		eventually(t, 10*time.Second, "the fast endpoint's 60 events while the slow one hangs", func() bool { n, _ := fast.distinct(); return n == 60 })
		if n := slow.calls.Load(); n >= 30 {
			t.Fatalf("the slow endpoint took %d calls meanwhile: the fast one waited for it", n)
		}
	})
	t.Run("HangingAttemptHoldsOneSender", func(t *testing.T) {
		// The first attempt hangs until the test lets it go: the others
		// go on meanwhile, claimed and recorded as they finish.
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		release := make(chan struct{})
		var first atomic.Bool
		rc.fail = func(int64, http.ResponseWriter, *http.Request) bool {
			if first.CompareAndSwap(false, true) {
				<-release
			}
			return false
		}
		rc.subscribe(t, db, "", notify.EndpointChange{})
		run(t, db, func(c *webhook.Config) { c.Timeout = 20 * time.Second })
		ingest(t, db, "hang", 50)
		eventually(t, 15*time.Second, "99 of 100 events while one attempt hangs", func() bool { n, _ := rc.distinct(); return n == 99 })
		close(release)
		eventually(t, 5*time.Second, "the 100th", func() bool { n, _ := rc.distinct(); return n == 100 })
	})
	t.Run("YieldsToBusyIntake", func(t *testing.T) {
		// While intake is busy, a few deliveries every 250 ms; all of them
		// once it eases.
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		rc.subscribe(t, db, "", notify.EndpointChange{})
		var busy atomic.Bool
		busy.Store(true)
		run(t, db, func(c *webhook.Config) { c.Busy = busy.Load })
		ingest(t, db, "busy", 50)
		eventually(t, 10*time.Second, "a first delivery", func() bool { n, _ := rc.distinct(); return n > 0 })
		start, first := time.Now(), rc.calls.Load()
		time.Sleep(500 * time.Millisecond)
		// At most Concurrency (4) claimed every 250 ms: about 8 in 500 ms.
		if n, took := rc.calls.Load()-first, time.Since(start); n > int64(4*(took/(250*time.Millisecond)+2)) {
			t.Fatalf("%d deliveries in %s while intake is busy", n, took)
		}
		busy.Store(false)
		eventually(t, 10*time.Second, "all 100 once intake eases", func() bool { n, _ := rc.distinct(); return n == 100 })
	})
	t.Run("Replicas", func(t *testing.T) {
		// Two dispatchers on one database: every event once at least,
		// every copy with the same webhook-id.
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		rc.subscribe(t, db, "", notify.EndpointChange{})
		// A long timeout: an attempt timed out on a loaded machine is sent
		// again (at least once), which is not what this test looks for.
		slow := func(c *webhook.Config) { c.Timeout = 10 * time.Second }
		run(t, db, slow)
		run(t, db, slow)
		for i := range 5 {
			ingest(t, db, fmt.Sprintf("rep%d", i), 40)
		}
		eventually(t, 15*time.Second, "400 events delivered", func() bool { n, _ := rc.distinct(); return n == 400 })
		time.Sleep(300 * time.Millisecond)
		if n, d := rc.distinct(); d != n {
			t.Fatalf("%d events in %d deliveries: replicas sent the same delivery twice", n, d)
		}
	})
	t.Run("DeadLetterAndRetry", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		var down atomic.Bool
		down.Store(true)
		rc.fail = func(_ int64, w http.ResponseWriter, _ *http.Request) bool {
			if down.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				return true
			}
			return false
		}
		ep := rc.subscribe(t, db, "", notify.EndpointChange{EventTypes: &[]string{notify.EventMiniAppAuditPassed}})
		run(t, db, func(c *webhook.Config) { c.Window = 300 * time.Millisecond })
		ingest(t, db, "dead", 3)
		var dead []*view.Delivery
		eventually(t, 10*time.Second, "3 dead letters", func() bool {
			dead, _, _ = db.Deliveries(context.Background(), view.DeliveryFilter{EndpointID: ep.ID, Status: view.DeliveryDead})
			return len(dead) == 3
		})
		d, err := db.Delivery(context.Background(), dead[0].ID)
		if err != nil || len(d.AttemptLog) < 2 || d.AttemptLog[0].StatusCode == nil || *d.AttemptLog[0].StatusCode != 500 {
			t.Fatalf("%+v %v", d, err)
		}
		down.Store(false)
		if _, err := db.RetryDelivery(context.Background(), dead[0].ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "the retried delivery arrives", func() bool { n, _ := rc.distinct(); return n == 1 })
		n, err := db.ReplayEndpoint(context.Background(), ep.ID, time.Now().Add(-time.Hour))
		if err != nil || n != 3 {
			t.Fatalf("replayed %d: %v", n, err)
		}
		eventually(t, 15*time.Second, "the replay delivers all 3", func() bool { n, d := rc.distinct(); return n == 3 && d >= 4 })
	})
	t.Run("DisabledAfterFailingTooLong", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		rc := newReceiver(t)
		rc.fail = func(_ int64, w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		ep := endpoint(t, db, rc.srv.URL, notify.EndpointChange{})
		run(t, db, func(c *webhook.Config) { c.DisableAfter = 300 * time.Millisecond })
		ingest(t, db, "off", 2)
		eventually(t, 10*time.Second, "endpoint disabled", func() bool {
			e, err := db.Endpoint(context.Background(), ep.ID)
			return err == nil && !e.Enabled && strings.HasPrefix(e.DisabledReason, "every attempt failed since")
		})
		calls := rc.calls.Load()
		time.Sleep(300 * time.Millisecond)
		if rc.calls.Load() > calls+4 { // attempts already begun may land
			t.Fatalf("a disabled endpoint is still called: %d, then %d", calls, rc.calls.Load())
		}
	})
	t.Run("SecretRotation", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		var sigs atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sigs.Store(r.Header.Get("webhook-signature"))
			w.WriteHeader(http.StatusOK)
		}))
		defer srv.Close()
		ep := endpoint(t, db, srv.URL, notify.EndpointChange{})
		admin := &webhook.Admin{AdminStore: db}
		rotated, err := admin.Rotate(context.Background(), ep.ID)
		if err != nil || rotated.Secret == ep.Secret || rotated.PreviousUntil == nil || len(rotated.Secrets) != 2 {
			t.Fatalf("%+v %v", rotated, err)
		}
		run(t, db, nil)
		ingest(t, db, "rot", 1)
		eventually(t, 5*time.Second, "a delivery", func() bool { s, _ := sigs.Load().(string); return s != "" })
		if s := sigs.Load().(string); len(strings.Fields(s)) != 2 {
			t.Fatalf("want two signatures during the rotation: %q", s)
		}
	})
}

func TestAdmin_Create(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	admin := &webhook.Admin{AdminStore: db}
	ctx := context.Background()
	for _, tc := range []struct {
		name, url string
		types     []string
	}{
		{"ErrScheme", "ftp://example.com/", nil},
		{"ErrNoHost", "http:///x", nil},
		{"ErrCredentials", "https://u:p@example.com/", nil},
		{"ErrUnresolvable", "https://nowhere.invalid/hook", nil},
		{"ErrEventType", "http://127.0.0.1/", []string{"authorization.granted", "order.nope"}},
		{"ErrPrefix", "http://127.0.0.1/", []string{"auth*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := notify.EndpointChange{URL: &tc.url}
			if tc.types != nil {
				c.EventTypes = &tc.types
			}
			_, err := admin.Create(ctx, c)
			if notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("%v", err)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		u := "http://localhost:9/hook"
		ep, err := admin.Create(ctx, notify.EndpointChange{URL: &u, EventTypes: &[]string{"authorization.*"}})
		if err != nil || !strings.HasPrefix(ep.Secret, "whsec_") || !ep.Enabled {
			t.Fatalf("%+v %v", ep, err)
		}
		got, err := db.Endpoint(ctx, ep.ID)
		if err != nil || got.Secret != "" || len(got.Secrets) != 1 {
			t.Fatalf("%+v %v", got, err)
		}
	})
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 5, time.UTC)
	for _, e := range []notify.StoredEvent{
		{ID: "evt_1", Type: notify.EventMiniAppAuditPassed, Timestamp: at, AppID: app, NotifyID: "n<1>&", OccurredAt: &at, Data: json.RawMessage(`{"k":"v"}`)},
		{ID: "evt_2", Type: notify.EventNotificationReceived, Timestamp: at, AppID: app, NotifyID: "n2"},
	} {
		got, err := webhook.Envelope(e)
		if err != nil {
			t.Fatal(err)
		}
		if e.Data == nil {
			e.Data = json.RawMessage("null")
		}
		want, _ := json.Marshal(e)
		if string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
}
