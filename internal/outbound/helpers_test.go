package outbound_test

import (
	"context"
	"crypto/rsa"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/redact"
	"github.com/alipay-notify-gateway/gateway/internal/seal"
)

// Test apps: keyAppID calls in public-key mode, certAppID in certificate
// mode. merchant is a merchant app that authorizes them.
const (
	keyAppID  = "2021000000000001"
	certAppID = "2021000000000002"
	otherApp  = "2021000000000003" // a second public-key mode app, with options.otherApp
	merchant  = "2021000000000777"
	userID    = "2088000000000001"
)

var (
	appKey    = devpki.MustNewKey() // the ISV app's private key (public-key mode)
	alipayKey = devpki.MustNewKey() // Alipay's key (public-key mode)
	pki       = devpki.MustNewPKI(certAppID)
	seq       atomic.Int64
)

// env is a Service on a fresh schema calling a simulator.
type env struct {
	sim *openapisim.Sim
	db  *postgres.DB
	svc *outbound.Service
	app *alipay.App
}

type options struct {
	certMode bool
	timeout  time.Duration
	now      func() time.Time
	// signKey replaces the app's private key (a misconfigured app).
	signKey *rsa.PrivateKey
	// otherApp configures otherApp beside the public-key mode app.
	otherApp bool
}

// keyApp returns the public-key mode app and the simulator's view of it.
func keyApp() (*alipay.App, openapisim.App) {
	return &alipay.App{ID: keyAppID, Keys: []alipay.Key{{Pub: &alipayKey.PublicKey}}, PrivateKey: appKey},
		openapisim.App{ID: keyAppID, Pub: &appKey.PublicKey}
}

// certApp returns the certificate mode app (two live Alipay certs), the
// simulator's view of it, and Alipay's cert SN.
func certApp(t testing.TB) (*alipay.App, openapisim.App, string) {
	roots, err := alipay.ParseRootBundle(pki.RootBundlePEM)
	if err != nil {
		t.Fatal(err)
	}
	a := &alipay.App{ID: certAppID, CertMode: true, PrivateKey: pki.App.Key,
		AppCertSN: alipay.CertSN(pki.App.Cert), RootCertSN: roots.SN}
	for _, c := range []devpki.Cert{pki.Alipay, pki.Rotated} {
		a.Keys = append(a.Keys, alipay.Key{SN: alipay.CertSN(c.Cert), Pub: &c.Key.PublicKey})
	}
	return a, openapisim.App{ID: certAppID, Pub: &pki.App.Key.PublicKey, AppCertSN: a.AppCertSN, RootCertSN: a.RootCertSN},
		alipay.CertSN(pki.Alipay.Cert)
}

func newEnv(t *testing.T, o options) *env {
	t.Helper()
	app, simApp := keyApp()
	cfg := openapisim.Config{Apps: []openapisim.App{simApp}, SignKey: alipayKey}
	if o.certMode {
		var sn string
		app, simApp, sn = certApp(t)
		cfg = openapisim.Config{Apps: []openapisim.App{simApp}, SignKey: pki.Alipay.Key, CertSN: sn}
	}
	if o.signKey != nil {
		app.PrivateKey = o.signKey
	}
	apps := []*alipay.App{app}
	if o.otherApp {
		apps = append(apps, &alipay.App{ID: otherApp, Keys: []alipay.Key{{Pub: &alipayKey.PublicKey}}, PrivateKey: appKey})
		cfg.Apps = append(cfg.Apps, openapisim.App{ID: otherApp, Pub: &appKey.PublicKey})
	}
	sim := openapisim.Start(cfg)
	t.Cleanup(sim.Close)
	db := pgtest.New(t)
	svc, err := outbound.New(outbound.Config{
		Apps: apps, GatewayURL: sim.URL(), Store: db, Sealer: pgtest.Sealer(t),
		Logger: zerolog.New(zerolog.NewTestWriter(t)), Timeout: o.timeout, Now: o.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, db: db, svc: svc, app: app}
}

// serviceWith returns another Service of e's app, store and simulator,
// whose tokens are sealed and opened by sealer.
func (e *env) serviceWith(t *testing.T, sealer *seal.Sealer) *outbound.Service {
	t.Helper()
	svc, err := outbound.New(outbound.Config{
		Apps: []*alipay.App{e.app}, GatewayURL: e.sim.URL(), Store: e.db, Sealer: sealer,
		Logger: zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// message is a valid template message for userID.
func message() outbound.TemplateMessage {
	return outbound.TemplateMessage{ToUserID: userID, UserTemplateID: "MDI4YzIxMDE2M2I5", Page: "pages/index",
		Data: []byte(`{"keyword1": {"value": "12:00"}, "keyword2": {"value": "支付宝"}}`)}
}

// authorize runs the authorization flow for merchant and returns the live
// token.
func (e *env) authorize(t *testing.T) string {
	t.Helper()
	grants, err := e.svc.CompleteAuthorization(context.Background(), outbound.Callback{
		AppID: e.app.ID, Code: e.sim.IssueCode(e.app.ID, merchant, "2088000000000999"), State: e.state(t, e.app.ID),
	})
	if err != nil || len(grants) != 1 || !grants[0].Applied {
		t.Fatalf("authorize: %+v %v", grants, err)
	}
	token, _ := e.sim.Tokens(e.app.ID, merchant)
	return token
}

// nopStore is a Store for a Service whose tests never reach it.
type nopStore struct{ outbound.Store }

// redirectURI is the callback authorization links send merchants back to.
const redirectURI = "https://gw.example.com/alipay/auth/callback"

// state returns the state of a new authorization link for appID (the only
// app when empty).
func (e *env) state(t *testing.T, appID string) string {
	t.Helper()
	l, err := e.svc.AuthorizationLink(outbound.LinkRequest{AppID: appID, RedirectURI: redirectURI})
	if err != nil {
		t.Fatal(err)
	}
	return l.State
}

// decide is what the application decides of n (every handler, with the
// test token key).
func decide(t *testing.T, n *notify.Notification) notify.Decided {
	t.Helper()
	d, err := pgtest.Registry(t).Decide(n)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// cancel ingests merchant's alipay.open.auth.appauth.cancelled at ts (ms).
func (e *env) cancel(t *testing.T, ts int64) notify.Outcome {
	t.Helper()
	biz := fmt.Sprintf(`{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000999","app_auth_token":"whatever"}`, e.app.ID, merchant)
	red, secrets := redact.Secrets(biz)
	out, err := e.db.Ingest(context.Background(), decide(t, &notify.Notification{
		AppID: e.app.ID, NotifyID: fmt.Sprintf("cancel-%d", seq.Add(1)), Method: notify.MethodAuthCancelled, UTCTimestamp: ts,
		BizContent: red, Secrets: secrets, Params: map[string]string{"biz_content": red, "msg_method": notify.MethodAuthCancelled},
		Channel: notify.ChannelHTTP, ContentForm: "v1", ReceivedAt: time.Now(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// grant ingests merchant's authorization notification (notify_type
// open_app_auth_notify) with notify_id id, auth_time authTime (ms) and
// these tokens.
func (e *env) grant(t *testing.T, id string, authTime int64, token, refresh string) notify.Outcome {
	t.Helper()
	biz := fmt.Sprintf(`{"detail":{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000999","auth_time":%d,`+
		`"app_auth_token":%q,"app_refresh_token":%q,"expires_in":3600,"re_expires_in":7200}}`, e.app.ID, merchant, authTime, token, refresh)
	red, secrets := redact.Secrets(biz)
	out, err := e.db.Ingest(context.Background(), decide(t, &notify.Notification{
		AppID: e.app.ID, NotifyID: id, Method: notify.MethodAuthGranted, BizContent: red, Secrets: secrets,
		Params:  map[string]string{"biz_content": red, "notify_type": notify.MethodAuthGranted, "status": "execute_auth", "auth_app_id": merchant},
		Channel: notify.ChannelHTTP, ContentForm: "v1", ReceivedAt: time.Now(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// row returns a template message's recorded status and sub_code.
func (e *env) row(t *testing.T, id int64) (status, code, subCode string) {
	t.Helper()
	err := e.db.Pool.QueryRow(context.Background(), `SELECT status, code, sub_code FROM template_messages WHERE id = $1`, id).
		Scan(&status, &code, &subCode)
	if err != nil {
		t.Fatal(err)
	}
	return status, code, subCode
}

// wantCode fails unless err has the domain code and, when given, reason.
func wantCode(t *testing.T, err error, code string, reason ...string) {
	t.Helper()
	if notify.ErrorCode(err) != code || len(reason) > 0 && notify.ErrorReason(err) != reason[0] {
		t.Fatalf("error %v (code %q reason %q); want %s %v", err, notify.ErrorCode(err), notify.ErrorReason(err), code, reason)
	}
}
