package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// opsToken is the ops API's bearer token in every test gateway.
const opsToken = "test-ops-token-0123456789"

// gateway is a running gateway on a fresh schema.
type gateway struct {
	db   *postgres.DB
	srv  *httptest.Server
	logs *testkit.LogBuffer // what the gateway logged
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
// test apps (testkit.KeyApp and testkit.CertApp, whose two live certs are a
// rotation), and the intake pipeline over r's inbox.
func startGateway(t *testing.T, db *postgres.DB, r rig) *gateway {
	t.Helper()
	key := testkit.KeyApp()
	key.EncryptKey = []byte("0123456789abcdef")
	cert := testkit.CertApp()
	cert.EncryptKey = r.certEncryptKey
	v := testkit.Verifier(t, key, cert)
	if r.inbox == nil {
		r.inbox = db
	}
	if r.registry == nil {
		r.registry = testkit.Registry(t)
	}
	logs := &testkit.LogBuffer{}
	cfg := r.cfg
	cfg.Verifier, cfg.Store, cfg.Logger, cfg.Metrics = v, db, testkit.Logger(t, logs), r.metrics
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
