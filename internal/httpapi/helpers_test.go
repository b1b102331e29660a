package httpapi_test

import (
	"context"
	"crypto"
	"crypto/rsa"
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

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

// Test apps: keyAppID verifies in public-key mode, certAppID in certificate
// mode with two live certs (a rotation). The samples' own app id is the
// public-key one.
const (
	keyAppID  = "2013121700999429"
	certAppID = "2021000000000002"
	opsToken  = "test-ops-token-0123456789"
)

var (
	pki    = devpki.MustNewPKI(certAppID)
	keyApp = devpki.MustNewKey()
	other  = devpki.MustNewKey()
	seq    atomic.Int64
)

// gateway is a running gateway on a fresh schema.
type gateway struct {
	db   *postgres.DB
	srv  *httptest.Server
	logs *logBuffer // what the gateway logged
}

// logBuffer collects log lines; it is safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testLogger logs to t and to logs.
func testLogger(t testing.TB, logs *logBuffer) zerolog.Logger {
	return zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs))
}

func newGateway(t *testing.T) *gateway {
	t.Helper()
	return startGateway(t, pgtest.New(t), rig{})
}

// rig is what a test gateway is built from, besides its database.
type rig struct {
	inbox    notify.Inbox     // the database when nil
	arrivals notify.Arrivals  // none when nil
	registry *notify.Registry // every handler, with a token key, when nil
	metrics  *metrics.Metrics // none when nil
	// certEncryptKey is the cert app's ALIPAY_ENCRYPT_KEY (none when nil).
	certEncryptKey []byte
	// cfg holds the rest of httpapi.Config.
	cfg httpapi.Config
}

// startGateway serves a gateway on db, built as r says: the verifier of the
// test apps (keyAppID in public-key mode, certAppID in certificate mode
// with two live certs), and the intake pipeline over r's inbox.
func startGateway(t *testing.T, db *postgres.DB, r rig) *gateway {
	t.Helper()
	roots, err := alipay.ParseRootBundle(pki.RootBundlePEM)
	if err != nil {
		t.Fatal(err)
	}
	cert := &alipay.App{ID: certAppID, CertMode: true, EncryptKey: r.certEncryptKey}
	for _, pem := range [][]byte{pki.Alipay.PEM, pki.Rotated.PEM} {
		c, err := alipay.ParseAlipayCert(pem, roots, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert.Keys = append(cert.Keys, alipay.Key{SN: c.SN, Pub: c.Key})
	}
	v, err := alipay.NewVerifier([]*alipay.App{
		{ID: keyAppID, Keys: []alipay.Key{{Pub: &keyApp.PublicKey}}, EncryptKey: []byte("0123456789abcdef")},
		cert,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.inbox == nil {
		r.inbox = db
	}
	if r.registry == nil {
		r.registry = pgtest.Registry(t)
	}
	logs := &logBuffer{}
	cfg := r.cfg
	cfg.Verifier, cfg.Store, cfg.Logger, cfg.Metrics = v, db, testLogger(t, logs), r.metrics
	pipeline := intake.New(intake.Config{Registry: r.registry, Inbox: r.inbox, Arrivals: r.arrivals, Metrics: r.metrics,
		Logger: cfg.Logger, Store: db, Redecode: v.Redecode})
	cfg.Intake, cfg.Reprocessor = pipeline, pipeline
	cfg.ReadyChecks = append([]func(context.Context) error{db.Ready}, cfg.ReadyChecks...)
	cfg.MaxBodyBytes, cfg.Tokens = 16<<10, []string{opsToken}
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(srv.Close)
	return &gateway{db: db, srv: srv, logs: logs}
}

// post sends body to /alipay/notify and returns the status and reply.
func (g *gateway) post(t testing.TB, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(g.srv.URL+"/alipay/notify", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mustAccept posts body and fails unless it gets 200 success.
func (g *gateway) mustAccept(t testing.TB, body string) {
	t.Helper()
	if code, reply := g.post(t, body); code != 200 || reply != "success" {
		t.Fatalf("got %d %q, want 200 success", code, reply)
	}
}

// count returns the number of rows of table.
func (g *gateway) count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := g.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// stateRows counts every row of every table a notification may write.
func (g *gateway) stateRows(t testing.TB) int {
	n := 0
	for _, table := range []string{"notifications", "authorizations", "mini_app_orders", "mini_app_order_events",
		"mini_apps", "mini_app_versions", "mini_app_audit_events"} {
		n += g.count(t, table)
	}
	return n
}

// status returns a stored notification's status and error.
func (g *gateway) status(t testing.TB, appID, notifyID string) (string, string, int) {
	t.Helper()
	var st, e string
	var dc int
	err := g.db.Pool.QueryRow(context.Background(),
		"SELECT status, error, delivery_count FROM notifications WHERE app_id = $1 AND notify_id = $2", appID, notifyID).Scan(&st, &e, &dc)
	if err != nil {
		t.Fatalf("notification %s/%s: %v", appID, notifyID, err)
	}
	return st, e, dc
}

// uniqueID returns a notify_id no other test uses.
func uniqueID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

// signed signs f with key (V1 content) and returns the body.
func signed(t *testing.T, f alipay.Form, key *rsa.PrivateKey) string {
	t.Helper()
	s, err := alipay.Sign(f, key, alipay.FormV1, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return s.Encode()
}

// sample returns the named sample's form for app, with a fresh notify_id.
func sample(t *testing.T, name, app string) alipay.Form {
	t.Helper()
	s, ok := samples.Get(name)
	if !ok {
		t.Fatalf("no sample %s", name)
	}
	f := alipay.Form(s.Form)
	f["app_id"] = app
	f["notify_id"] = uniqueID(name)
	return f
}

// form is a minimal notification for app with method and biz.
func form(app, method, biz string, ts int64) alipay.Form {
	return alipay.Form{
		"charset": "UTF-8", "biz_content": biz, "msg_method": method, "version": "1.1", "sign_type": "RSA2",
		"utc_timestamp": fmt.Sprint(ts), "notify_id": uniqueID("n"), "app_id": app,
	}
}
