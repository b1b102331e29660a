package outbound_test

import (
	"context"
	"crypto/rsa"
	"fmt"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/seal"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// userID is the Alipay user the template messages go to.
const userID = "2088000000000001"

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
	// testkit.OtherAppID configures testkit.OtherApp beside the public-key mode app.
	otherApp bool
}

func newEnv(t *testing.T, o options) *env {
	t.Helper()
	app := testkit.KeyApp()
	cfg := openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.AlipayKey()}
	if o.certMode {
		app = testkit.CertApp()
		cfg = openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.PKI().Alipay.Key, CertSN: alipay.CertSN(testkit.PKI().Alipay.Cert)}
	}
	if o.signKey != nil {
		app.PrivateKey = o.signKey
	}
	apps := []*alipay.App{app}
	if o.otherApp {
		other := testkit.OtherApp()
		apps = append(apps, other)
		cfg.Apps = append(cfg.Apps, testkit.SimApp(other))
	}
	sim := openapisim.Start(cfg)
	t.Cleanup(sim.Close)
	db := pgtest.New(t)
	svc, err := outbound.New(outbound.Config{
		Apps: apps, GatewayURL: sim.URL(), Store: db, Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t), Timeout: o.timeout, Now: o.now,
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
		Logger: testkit.Logger(t),
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
		AppID: e.app.ID, Code: e.sim.IssueCode(e.app.ID, testkit.MerchantAppID, "2088000000000999"), State: e.state(t, e.app.ID),
	})
	if err != nil || len(grants) != 1 || !grants[0].Applied {
		t.Fatalf("authorize: %+v %v", grants, err)
	}
	token, _ := e.sim.Tokens(e.app.ID, testkit.MerchantAppID)
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

// cancel ingests merchant's alipay.open.auth.appauth.cancelled at ts (ms).
func (e *env) cancel(t *testing.T, ts int64) notify.Outcome {
	t.Helper()
	biz := fmt.Sprintf(`{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000999","app_auth_token":"whatever"}`, e.app.ID, testkit.MerchantAppID)
	n := testkit.Note(notify.MethodAuthCancelled, biz, ts)
	n.AppID = e.app.ID
	out, err := e.db.Ingest(context.Background(), testkit.Decide(t, n))
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
		`"app_auth_token":%q,"app_refresh_token":%q,"expires_in":3600,"re_expires_in":7200}}`, e.app.ID, testkit.MerchantAppID, authTime, token, refresh)
	n := testkit.Note(notify.MethodAuthGranted, biz, authTime)
	n.AppID, n.NotifyID = e.app.ID, id
	n.Params["status"], n.Params["auth_app_id"] = "execute_auth", testkit.MerchantAppID
	out, err := e.db.Ingest(context.Background(), testkit.Decide(t, n))
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
