package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/console"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

// opsToken is the ops token every test gateway takes.
const opsToken = "console-test-token-0123456789"

// aesKey is the cert app's ALIPAY_ENCRYPT_KEY once it is configured.
var aesKey = []byte("fedcba9876543210")

// gateway is a real gateway handler on a real listener and a fresh schema:
// Alipay's endpoint, the ops API and the console.
type gateway struct {
	db      *postgres.DB
	srv     *httptest.Server
	metrics *metrics.Metrics
	logs    *testkit.LogBuffer
	// before is a second gateway on the same database, as a release
	// without the cert app's ALIPAY_ENCRYPT_KEY: what it stores encrypted
	// is failed, for the console to reprocess.
	before *httptest.Server
	// With rigOptions.reconcile: Alipay's simulator, the outbound calls to
	// it and the reconciler the console starts runs with.
	sim *openapisim.Sim
	svc *outbound.Service
	rec *reconcile.Reconciler
	// With rigOptions.batches: the batch Admin the console steers with
	// (the sender runs only when a test starts it: g.sender).
	admin *batchsend.Admin
}

type rigOptions struct {
	tls       bool
	trusted   []netip.Prefix
	ttl       time.Duration
	reconcile bool
	batches   bool
}

func newGateway(t *testing.T, opts ...rigOptions) *gateway {
	t.Helper()
	var o rigOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	db := pgtest.New(t)
	g := &gateway{db: db, metrics: metrics.New(), logs: &testkit.LogBuffer{}}
	log := testkit.Logger(t, g.logs)
	keyApp, certApp := testkit.KeyApp(), testkit.CertApp()
	certApp.EncryptKey = aesKey
	v := testkit.Verifier(t, keyApp, certApp)
	pipeline := intake.New(intake.Config{Registry: testkit.Registry(t), Inbox: db, Metrics: g.metrics, Logger: log, Store: db, Redecode: v.Redecode})
	admin := &webhook.Admin{AdminStore: db, Resolve: func(context.Context, string) error { return nil }}
	ready := []func(context.Context) error{db.Ready}
	cfg := httpapi.Config{Verifier: v, Intake: pipeline, Store: db, Reprocessor: pipeline, Logger: log, MaxBodyBytes: 16 << 10,
		Tokens: []string{opsToken}, Metrics: g.metrics, ReadyChecks: ready, Webhooks: admin, TrustedProxies: o.trusted}
	ccfg := console.Config{Store: db, Reprocessor: pipeline, Webhooks: admin, Verifier: v, Keys: keysOf(t),
		ReadyChecks: ready, Metrics: g.metrics, Tokens: []string{opsToken}, SessionTTL: o.ttl, TrustedProxies: o.trusted,
		Location: time.FixedZone("CST", 8*3600), MaxBodyBytes: 16 << 10, Logger: log}
	if o.reconcile || o.batches {
		g.sim = openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(keyApp)}, SignKey: testkit.AlipayKey()})
		t.Cleanup(g.sim.Close)
		svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{keyApp}, GatewayURL: g.sim.URL(), Store: db, Sealer: testkit.Sealer(t),
			Logger: log, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		g.svc = svc
	}
	if o.reconcile {
		g.rec = reconcile.New(reconcile.Config{Store: db, Alipay: g.svc, Limiter: db, AppIDs: g.svc.AppIDs(), Lease: 30 * time.Second, Logger: log})
		ccfg.Reconcile, cfg.Reconcile = g.rec, g.rec
	}
	if o.batches {
		g.admin = &batchsend.Admin{Store: db, Outbound: g.svc, Rates: batchsend.Rates{Default: 20}, Logger: log}
		ccfg.Batches, cfg.Batches = g.admin, g.admin
	}
	cfg.Console = console.New(ccfg)
	if o.tls {
		g.srv = httptest.NewTLSServer(httpapi.New(cfg))
	} else {
		g.srv = httptest.NewServer(httpapi.New(cfg))
	}
	t.Cleanup(g.srv.Close)

	// The release before: the cert app without its AES key.
	oldCert := testkit.CertApp()
	ov := testkit.Verifier(t, testkit.KeyApp(), oldCert)
	old := intake.New(intake.Config{Registry: testkit.Registry(t), Inbox: db, Logger: log, Store: db, Redecode: ov.Redecode})
	g.before = httptest.NewServer(httpapi.New(httpapi.Config{Verifier: ov, Intake: old, Store: db, Reprocessor: old, Logger: log, MaxBodyBytes: 16 << 10}))
	t.Cleanup(g.before.Close)
	return g
}

// keysOf is the key material of the test apps as config.Load keeps it
// (config.Config.Keys): AppID's Alipay public key, CertAppID's root and
// certs.
func keysOf(t *testing.T) map[string]diagnose.DiagnoseInput {
	t.Helper()
	pub, err := devpki.PublicKeyBase64(&testkit.AlipayKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := testkit.PKI()
	return map[string]diagnose.DiagnoseInput{
		testkit.AppID: {PublicKeys: []diagnose.Source{{Name: "ALIPAY_PUBLIC_KEY", Data: []byte(pub)}}},
		testkit.CertAppID: {
			RootCert: &diagnose.Source{Name: "ALIPAY_ROOT_CERT_FILE alipayRootCert.crt", Data: p.RootBundlePEM},
			Certs: []diagnose.Source{{Name: "ALIPAY_PUBLIC_CERT_FILE alipayCertPublicKey_RSA2.crt", Data: p.Alipay.PEM},
				{Name: "ALIPAY_PUBLIC_CERT_FILE rotated.crt", Data: p.Rotated.PEM}},
		},
	}
}

// send posts a signed notification body to the gateway (or to before).
func send(t testing.TB, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/alipay/notify", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "success" {
		t.Fatalf("notification answered %d %q", resp.StatusCode, b)
	}
}

// encryptedOrder is a merchant-confirmed notification of the cert app,
// encrypted with aesKey: failed by before, applied once reprocessed.
func encryptedOrder(t testing.TB) alipay.Form {
	t.Helper()
	f := testkit.Sample(t, "merchant-confirmed", testkit.CertAppID)
	f["encrypt_type"] = "AES"
	var err error
	if f["biz_content"], err = alipay.EncryptBiz(aesKey, f["biz_content"]); err != nil {
		t.Fatal(err)
	}
	return f
}

// client is an operator's HTTP client: cookies kept, redirects not
// followed.
type client struct {
	t    testing.TB
	g    *gateway
	http *http.Client
}

func (g *gateway) client(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: g.srv.Client().Transport, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &client{t: t, g: g, http: hc}
}

// do sends a request and returns its status, Location and body.
func (c *client) do(method, path string, form url.Values, header ...string) (int, string, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.g.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

var hiddenToken = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of a page's form.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := hiddenToken.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// signIn signs the client in and returns the session's CSRF token.
func (c *client) signIn() string {
	c.t.Helper()
	_, _, page := c.do("GET", "/console/login", nil)
	code, loc, _ := c.do("POST", "/console/login", url.Values{"csrf": {csrfOf(c.t, page)}, "token": {opsToken}, "next": {"/console/"}})
	if code != http.StatusSeeOther || loc != "/console/" {
		c.t.Fatalf("sign-in answered %d to %q", code, loc)
	}
	code, _, page = c.do("GET", "/console/", nil)
	if code != 200 {
		c.t.Fatalf("overview after sign-in: %d\n%s", code, page)
	}
	return csrfOf(c.t, page)
}

// mustGet fetches a page that must answer 200.
func (c *client) mustGet(path string, header ...string) string {
	c.t.Helper()
	code, loc, page := c.do("GET", path, nil, header...)
	if code != 200 {
		c.t.Fatalf("GET %s: %d (Location %q)\n%s", path, code, loc, page)
	}
	return page
}

// sendAudits sends a mini-app's audit notifications through the gateway
// and returns their forms: version 0.0.1 rejected (with reasons, memos
// and images), 0.0.2 base-audit passed, then an older rejection of 0.0.2
// that arrives late (stale).
func sendAudits(t testing.TB, g *gateway, miniAppID string) []alipay.Form {
	t.Helper()
	at := time.Now().Add(-26 * time.Hour).UnixMilli() // Alipay's times: the audits of yesterday
	const reasons = `{"audit_images":["shot-1.png"],"memos":[{"memo":"首页白屏","memo_image_list":["memo-1.png","memo-2.png"]}]}`
	forms := []alipay.Form{
		testkit.Form(testkit.AppID, notify.MethodAuditRejected, `{"mini_app_id":"`+miniAppID+`","mini_app_version":"0.0.1","audit_reason":"JS错误检测:发现JS错误","base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":`+reasons+`}`, at),
		testkit.Form(testkit.AppID, notify.MethodBaseAuditPassed, `{"mini_app_id":"`+miniAppID+`","mini_app_version":"0.0.2","base_audit":"PASS","promote_audit":"REJECT","promote_audit_reason":{"memos":[{"memo":"营销信息不符","memo_image_list":["promo.png"]}]}}`, at+int64(2*time.Hour/time.Millisecond)),
		testkit.Form(testkit.AppID, notify.MethodAuditRejected, `{"mini_app_id":"`+miniAppID+`","mini_app_version":"0.0.2","audit_reason":"迟到的驳回"}`, at+int64(time.Hour/time.Millisecond)),
	}
	for _, f := range forms {
		send(t, g.srv.URL, testkit.Body(t, f, testkit.AlipayKey()))
	}
	return forms
}

// authorize has merchant authorize the key app through the authorization
// flow against the simulator (the gateway then holds its token).
func (g *gateway) authorize(t testing.TB, merchant string) {
	t.Helper()
	link, err := g.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: "https://gw.example.com/alipay/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	grants, err := g.svc.CompleteAuthorization(context.Background(), outbound.Callback{
		Code: g.sim.IssueCode(testkit.AppID, merchant, "2088"+merchant[4:]), State: link.State})
	if err != nil || len(grants) != 1 || !grants[0].Applied {
		t.Fatalf("authorize %s: %+v %v", merchant, grants, err)
	}
}

// lostAudit sets up a lost notification for reconciliation to find:
// merchant authorized, its mini-app's 1.0.0 passed (the notification came),
// and at Alipay 1.1.0 rejected (its notification never came).
func lostAudit(t testing.TB, g *gateway, merchant string) {
	t.Helper()
	g.authorize(t, merchant)
	at := time.Now().Add(-48 * time.Hour).UnixMilli()
	send(t, g.srv.URL, testkit.Body(t, testkit.Form(testkit.AppID, notify.MethodAuditPassed,
		`{"mini_app_id":"`+merchant+`","mini_app_version":"1.0.0"}`, at), testkit.AlipayKey()))
	g.sim.SetVersion(merchant, openapisim.Version{Version: "1.0.0", Status: reconcile.StatusRelease})
	g.sim.SetVersion(merchant, openapisim.Version{Version: "1.1.0", Status: reconcile.StatusAuditReject, RejectReason: "服务类目不符"})
}

// work has the reconciler check every pending target now.
func (g *gateway) work(t testing.TB) {
	t.Helper()
	if _, err := g.rec.Work(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// batchOf stores a batch of n recipients (2088 user ids from first) of
// the ISV app's own mini-app and returns its id.
func (g *gateway) batchOf(t testing.TB, first, n int) int64 {
	t.Helper()
	r := &batchsend.Request{UserTemplateID: "tpl-order-ready", Page: "pages/order/index", Data: []byte(`{"keyword1":{"value":"取餐号 42"}}`)}
	for i := range n {
		r.Recipients = append(r.Recipients, batchsend.Recipient{ToUserID: fmt.Sprintf("2088%012d", first+i)})
	}
	v, _, err := g.admin.Create(context.Background(), r, "")
	if err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// sender runs a batch sender at rate sends a second until the test ends.
func (g *gateway) sender(t testing.TB, rate float64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s := batchsend.New(batchsend.Config{Store: g.db, Bucket: g.db, Outbound: g.svc, Rates: batchsend.Rates{Default: rate},
		Metrics: g.metrics, Logger: testkit.Logger(t), Concurrency: 4, Poll: 20 * time.Millisecond})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// batchCount counts batch id's recipients of status.
func (g *gateway) batchCount(t testing.TB, id int64, status string) int {
	t.Helper()
	var n int
	err := g.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM template_message_recipients WHERE batch_id = $1 AND status = $2`, id, status).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// batchStatus is batch id's status.
func (g *gateway) batchStatus(t testing.TB, id int64) string {
	t.Helper()
	var s string
	if err := g.db.Pool.QueryRow(context.Background(), `SELECT status FROM template_message_batches WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
