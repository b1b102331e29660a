package outbound_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestService_CompleteAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		token := e.authorize(t)
		var (
			status             string
			sealed, sealed2    []byte
			expires, reExpires time.Time
			notifyID           string
		)
		err := e.db.Pool.QueryRow(ctx, `SELECT status, app_auth_token, app_refresh_token, expires_at, refresh_expires_at, event_notify_id
            FROM authorizations WHERE app_id = $1 AND auth_app_id = $2`, testkit.AppID, testkit.MerchantAppID).Scan(&status, &sealed, &sealed2, &expires, &reExpires, &notifyID)
		if err != nil {
			t.Fatal(err)
		}
		if status != "authorized" || string(sealed) == token || len(sealed2) == 0 {
			t.Fatalf("status %s; tokens must be stored sealed", status)
		}
		opened, err := testkit.Sealer(t).Open(sealed, notify.TokenOwner(testkit.AppID, testkit.MerchantAppID))
		if err != nil || opened != token {
			t.Fatalf("sealed token opens to %q, %v", opened, err)
		}
		// expires_in came as a number, re_expires_in as a string.
		if d := time.Until(expires); d < 364*24*time.Hour || d > 366*24*time.Hour {
			t.Fatalf("expires_at %v", expires)
		}
		if d := time.Until(reExpires); d < 371*24*time.Hour || d > 373*24*time.Hour {
			t.Fatalf("refresh_expires_at %v", reExpires)
		}
		if len(notifyID) < 6 || notifyID[:6] != "oauth:" {
			t.Fatalf("event_notify_id %q", notifyID)
		}
	})
	t.Run("ErrCodeUsed", func(t *testing.T) {
		code := e.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000999")
		cb := outbound.Callback{Code: code, State: e.state(t, "")}
		if _, err := e.svc.CompleteAuthorization(ctx, cb); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.CompleteAuthorization(ctx, cb)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.SubCode != "isv.code-invalid" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("ErrMissingCode", func(t *testing.T) {
		_, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{AppID: testkit.AppID, State: e.state(t, "")})
		wantCode(t, err, notify.EINVALID, "missing_code")
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		_, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{AppID: "2021000000009999", Code: "c", State: e.state(t, "")})
		wantCode(t, err, notify.ENOTFOUND)
	})
	t.Run("ErrUpstream", func(t *testing.T) {
		e.sim.Fail(openapisim.MethodAuthTokenApp, openapisim.Fault{HTTPStatus: 503})
		_, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{AppID: testkit.AppID, Code: e.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, ""), State: e.state(t, "")})
		wantCode(t, err, outbound.EUPSTREAM)
	})
}

// TestService_CompleteAuthorization_State: a redirect whose state is not
// one the gateway issued for its app, unexpired, is refused before Alipay
// is called, and its code is left unused.
func TestService_CompleteAuthorization_State(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64 // the service's clock, ahead of now by this
	e := newEnv(t, options{now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	ctx := context.Background()
	good := e.state(t, "")
	offset.Store(int64(-2 * time.Hour))
	expired := e.state(t, "") // issued two hours ago, for an hour
	offset.Store(0)
	raw, err := base64.StdEncoding.DecodeString(good)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-20] ^= 1 // a digit of the app id: well-formed, for another app, its tag now wrong
	forged := base64.StdEncoding.EncodeToString(raw)
	for _, c := range []struct {
		name, state, reason string
	}{
		{"ErrNoState", "", "missing_state"},
		{"ErrMalformedState", "not base64!", "malformed_state"},
		{"ErrShortState", "AQID", "malformed_state"},
		{"ErrLongState", strings.Repeat("A", outbound.MaxStateLen+4), "malformed_state"},
		{"ErrForgedState", forged, "forged_state"},
		{"ErrExpiredState", expired, "expired_state"},
		{"ErrOtherKeyState", otherKeyState(t), "forged_state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			requests := e.sim.Requests()
			code := e.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000999")
			_, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{AppID: testkit.AppID, Code: code, State: c.state})
			wantCode(t, err, notify.EINVALID, c.reason)
			if e.sim.Requests() != requests {
				t.Fatal("Alipay was called")
			}
			if strings.Contains(err.Error(), code) {
				t.Fatal("the error shows the code")
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		// The refused codes are still good: nothing used them.
		code := e.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000999")
		if _, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{AppID: testkit.AppID, Code: code, State: good}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKStateUsedTwice", func(t *testing.T) {
		// One link may serve several merchants until it expires.
		code := e.sim.IssueCode(testkit.AppID, "2021000000000778", "2088000000000998")
		if _, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{Code: code, State: good}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKPlusAsSpace", func(t *testing.T) {
		// A "+" that came back unencoded reads as a space.
		var s string
		for s = e.state(t, ""); !strings.Contains(s, "+"); s = e.state(t, "") {
		}
		code := e.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000999")
		if _, err := e.svc.CompleteAuthorization(ctx, outbound.Callback{Code: code, State: strings.ReplaceAll(s, "+", " ")}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestService_CompleteAuthorization_OtherApp: a state issued for one ISV
// app does not authorize another.
func TestService_CompleteAuthorization_OtherApp(t *testing.T) {
	t.Parallel()
	a, b := testkit.KeyApp(), testkit.OtherApp()
	sim := openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(a), testkit.SimApp(b)}, SignKey: testkit.AlipayKey()})
	t.Cleanup(sim.Close)
	svc, err := outbound.New(outbound.Config{
		Apps: []*alipay.App{a, b}, GatewayURL: sim.URL(), Store: pgtest.New(t), Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	link, err := svc.AuthorizationLink(outbound.LinkRequest{AppID: testkit.AppID, RedirectURI: redirectURI})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ErrOtherAppState", func(t *testing.T) {
		_, err := svc.CompleteAuthorization(context.Background(), outbound.Callback{AppID: testkit.OtherAppID, Code: "c", State: link.State})
		wantCode(t, err, notify.EINVALID, "other_app_state")
		if sim.Requests() != 0 {
			t.Fatal("Alipay was called")
		}
	})
	t.Run("ErrMissingAppID", func(t *testing.T) {
		_, err := svc.CompleteAuthorization(context.Background(), outbound.Callback{Code: "c", State: link.State})
		wantCode(t, err, notify.EINVALID, "missing_app_id")
		_, err = svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: redirectURI})
		wantCode(t, err, notify.EINVALID, "missing_app_id")
	})
}

// TestService_CompleteAuthorization_KeyRotation: a link issued before
// TOKEN_ENCRYPTION_KEY was rotated still works while the old key is in
// TOKEN_ENCRYPTION_OLD_KEYS.
func TestService_CompleteAuthorization_KeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testkit.OtherTokenKey, testkit.TokenKey
	before := otherKeyState(t) // under oldKey
	check := func(t *testing.T, current []byte, old ...[]byte) error {
		t.Helper()
		app := testkit.KeyApp()
		svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{app}, GatewayURL: "http://127.0.0.1:1/gateway.do", Store: nopStore{},
			Sealer: testkit.SealerOf(t, current, old...)})
		if err != nil {
			t.Fatal(err)
		}
		// No code: the state is checked first, so missing_code says it passed.
		_, err = svc.CompleteAuthorization(context.Background(), outbound.Callback{State: before})
		return err
	}
	t.Run("OK", func(t *testing.T) {
		wantCode(t, check(t, newKey, oldKey), notify.EINVALID, "missing_code")
	})
	t.Run("ErrOldKeyDropped", func(t *testing.T) {
		wantCode(t, check(t, newKey), notify.EINVALID, "forged_state")
	})
}

// otherKeyState is a well-formed state for testkit.AppID issued under another
// TOKEN_ENCRYPTION_KEY.
func otherKeyState(t *testing.T) string {
	t.Helper()
	app := testkit.KeyApp()
	svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{app}, GatewayURL: "http://127.0.0.1:1/gateway.do", Store: nopStore{},
		Sealer: testkit.SealerOf(t, testkit.OtherTokenKey)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: redirectURI})
	if err != nil {
		t.Fatal(err)
	}
	return l.State
}

func TestService_AuthorizationLink(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	e := newEnv(t, options{now: func() time.Time { return now }})
	ttl := func(s int64) *int64 { return &s }
	t.Run("OK", func(t *testing.T) {
		l, err := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: redirectURI + "?from=ops"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(l.URL)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if u.Scheme+"://"+u.Host+u.Path != outbound.DefaultAuthURL || len(q) != 3 || q.Get("app_id") != testkit.AppID ||
			q.Get("redirect_uri") != redirectURI+"?from=ops" || q.Get("state") != l.State {
			t.Fatalf("%s", l.URL)
		}
		if !l.ExpiresAt.Equal(now.Add(time.Hour).Truncate(time.Second)) || l.AppID != testkit.AppID {
			t.Fatalf("expires %v", l.ExpiresAt)
		}
		// Alipay's limits: base64, at most 100 characters.
		if _, err := base64.StdEncoding.DecodeString(l.State); err != nil || len(l.State) > outbound.MaxStateLen {
			t.Fatalf("state %q (%d characters): %v", l.State, len(l.State), err)
		}
		if l2, _ := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: redirectURI}); l2.State == l.State {
			t.Fatal("two links share a state")
		}
	})
	t.Run("OKTTL", func(t *testing.T) {
		for _, s := range []int64{60, 86400} {
			l, err := e.svc.AuthorizationLink(outbound.LinkRequest{AppID: testkit.AppID, RedirectURI: "http://127.0.0.1:8080/alipay/auth/callback", TTLSeconds: ttl(s)})
			if err != nil || !l.ExpiresAt.Equal(now.Add(time.Duration(s)*time.Second).Truncate(time.Second)) {
				t.Fatalf("%d: %v %v", s, l.ExpiresAt, err)
			}
		}
	})
	t.Run("ErrTTL", func(t *testing.T) {
		for _, s := range []int64{0, -1, 59, 86401, 1 << 62} {
			_, err := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: redirectURI, TTLSeconds: ttl(s)})
			wantCode(t, err, notify.EINVALID, "bad_ttl")
		}
	})
	t.Run("ErrRedirectURI", func(t *testing.T) {
		for _, u := range []string{
			"", "/alipay/auth/callback", "gw.example.com/cb", "http://gw.example.com/cb", "ftp://gw.example.com/cb",
			"https://user:pw@gw.example.com/cb", "https://gw.example.com/cb#x", "https://gw.example.com/cb#",
			"https:///cb", "https:opaque", "https://gw.example.com/cb?state=x", "https://gw.example.com/cb?app_auth_code=x",
			"https://gw.example.com/cb?app_id=1", "https://gw.example.com/cb?a=%zz", "http://localhost.example.com/cb",
			"https://gw.example.com/" + strings.Repeat("a", 2048),
		} {
			_, err := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: u})
			if notify.ErrorCode(err) != notify.EINVALID || notify.ErrorReason(err) != "bad_redirect_uri" {
				t.Errorf("%q: %v", u, err)
			}
		}
	})
	t.Run("OKRedirectURI", func(t *testing.T) {
		for _, u := range []string{"https://gw.example.com/alipay/auth/callback", "http://localhost:8080/cb", "http://[::1]/cb", "https://gw.example.com:8443/cb?tenant=7"} {
			if _, err := e.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: u}); err != nil {
				t.Errorf("%q: %v", u, err)
			}
		}
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		_, err := e.svc.AuthorizationLink(outbound.LinkRequest{AppID: "2021000000009999", RedirectURI: redirectURI})
		wantCode(t, err, notify.ENOTFOUND)
	})
}

func TestNew_AuthURL(t *testing.T) {
	t.Parallel()
	app := testkit.KeyApp()
	cfg := func(u string) outbound.Config {
		return outbound.Config{Apps: []*alipay.App{app}, GatewayURL: "http://127.0.0.1:1/gateway.do", Store: nopStore{}, Sealer: testkit.Sealer(t), AuthURL: u}
	}
	t.Run("OK", func(t *testing.T) {
		svc, err := outbound.New(cfg("https://openauth-sandbox.dl.alipaydev.com/oauth2/appToAppAuth.htm?lang=en"))
		if err != nil {
			t.Fatal(err)
		}
		l, err := svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: redirectURI})
		if err != nil || !strings.HasPrefix(l.URL, "https://openauth-sandbox.dl.alipaydev.com/oauth2/appToAppAuth.htm?") || !strings.Contains(l.URL, "lang=en") {
			t.Fatalf("%s %v", l.URL, err)
		}
	})
	t.Run("ErrBadURL", func(t *testing.T) {
		for _, u := range []string{"openauth.alipay.com/oauth2/appToAppAuth.htm", "ftp://x/y", "https:///x", "https://a/b#c", "%zz"} {
			if _, err := outbound.New(cfg(u)); err == nil || !strings.Contains(err.Error(), "ALIPAY_AUTH_URL") {
				t.Errorf("%q: %v", u, err)
			}
		}
	})
}

// TestService_CompleteAuthorization_Ordering: the flow's grant is ordered
// with the notifications by time, through the same conditional upsert.
func TestService_CompleteAuthorization_Ordering(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	t.Run("StaleCancel", func(t *testing.T) {
		// A cancellation from before the grant changes nothing.
		e.authorize(t)
		if out := e.cancel(t, time.Now().Add(-time.Hour).UnixMilli()); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		if out := e.cancel(t, time.Now().Add(200*time.Millisecond).UnixMilli()); out.Status != notify.StatusApplied {
			t.Fatalf("%+v", out)
		}
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.ECONFLICT, "authorization_cancelled")
	})
	t.Run("GrantedAgain", func(t *testing.T) {
		time.Sleep(300 * time.Millisecond) // past the cancellation's time
		e.authorize(t)
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
	})
}

func onBehalf() outbound.TemplateMessage {
	m := message()
	m.AuthAppID = testkit.MerchantAppID
	return m
}

func TestService_OnBehalf(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	t.Run("ErrUnknownAuthorization", func(t *testing.T) {
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.ENOTFOUND, "unknown_authorization")
		_, err = e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{AuthAppID: testkit.MerchantAppID, UserID: userID, TemplateIDs: []string{"a"}})
		wantCode(t, err, notify.ENOTFOUND, "unknown_authorization")
	})
	t.Run("OK", func(t *testing.T) {
		token := e.authorize(t)
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
		calls := e.sim.Calls(send)
		if got := calls[len(calls)-1].Params.Get("app_auth_token"); got != token {
			t.Fatalf("app_auth_token %q; want the merchant's", got)
		}
		if sent := e.sim.Sent(); sent[len(sent)-1].AuthAppID != testkit.MerchantAppID {
			t.Fatalf("%+v", sent)
		}
		var req string
		if err := e.db.Pool.QueryRow(ctx, `SELECT request::text FROM template_messages ORDER BY id DESC LIMIT 1`).Scan(&req); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(req, token) {
			t.Fatal("the token is in the recorded request")
		}
	})
	t.Run("ErrCancelled", func(t *testing.T) {
		calls := len(e.sim.Calls(send))
		e.cancel(t, time.Now().Add(time.Second).UnixMilli())
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.ECONFLICT, "authorization_cancelled")
		_, err = e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{AuthAppID: testkit.MerchantAppID, UserID: userID, TemplateIDs: []string{"a"}})
		wantCode(t, err, notify.ECONFLICT, "authorization_cancelled")
		if len(e.sim.Calls(send)) != calls {
			t.Fatal("a cancelled token was used")
		}
	})
	t.Run("ErrRevokedAtAlipay", func(t *testing.T) {
		// Alipay refuses a token it no longer honours (20001).
		e2 := newEnv(t, options{})
		e2.authorize(t)
		e2.sim.Revoke(testkit.AppID, testkit.MerchantAppID)
		_, _, err := e2.svc.SendTemplateMessage(ctx, onBehalf(), "")
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "20001" {
			t.Fatalf("%v", err)
		}
	})
}
