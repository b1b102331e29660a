package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/console"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// setCookie sends a request and returns the cookie name it sets, and the
// status.
func setCookie(t *testing.T, c *client, method, path string, form url.Values, name string, header ...string) (*http.Cookie, int) {
	t.Helper()
	req, _ := http.NewRequest(method, c.g.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == name {
			return ck, resp.StatusCode
		}
	}
	return nil, resp.StatusCode
}

func TestConsole_SignIn(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	t.Run("ErrNoSession", func(t *testing.T) {
		c := g.client(t)
		code, loc, _ := c.do("GET", "/console/notifications?status=failed", nil)
		if code != http.StatusSeeOther || loc != "/console/login?next="+url.QueryEscape("/console/notifications?status=failed") {
			t.Fatalf("GET without a session: %d %q", code, loc)
		}
		code, _, page := c.do("POST", "/console/notifications/x/reprocess", url.Values{"csrf": {"x"}})
		if code != http.StatusUnauthorized || !strings.Contains(page, "请先登录") {
			t.Fatalf("POST without a session: %d\n%s", code, page)
		}
	})
	t.Run("ErrWrongToken", func(t *testing.T) {
		c := g.client(t)
		_, _, page := c.do("GET", "/console/login", nil)
		code, _, page := c.do("POST", "/console/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {opsToken + "x"}})
		if code != http.StatusUnauthorized || !strings.Contains(page, "login-error") {
			t.Fatalf("%d\n%s", code, page)
		}
		if code, _, _ := c.do("GET", "/console/", nil); code != http.StatusSeeOther {
			t.Fatalf("signed in with a wrong token: %d", code)
		}
		if strings.Contains(g.logs.String(), opsToken) {
			t.Fatal("a token was logged")
		}
	})
	t.Run("ErrLoginFormToken", func(t *testing.T) {
		c := g.client(t) // a form posted from elsewhere: no form cookie
		code, _, _ := c.do("POST", "/console/login", url.Values{"csrf": {"forged"}, "token": {opsToken}})
		if code != http.StatusForbidden {
			t.Fatalf("sign-in without the form's token: %d", code)
		}
	})
	t.Run("ErrOpenRedirect", func(t *testing.T) {
		for _, next := range []string{"https://evil.example/", "//evil.example/x", "/v1/notifications", "/console\\@evil", "/console/../v1"} {
			c := g.client(t)
			_, _, page := c.do("GET", "/console/login", nil)
			code, loc, _ := c.do("POST", "/console/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {opsToken}, "next": {next}})
			if code != http.StatusSeeOther || loc != "/console/" {
				t.Fatalf("next %q: %d %q", next, code, loc)
			}
		}
	})
	t.Run("OK", func(t *testing.T) {
		c := g.client(t)
		csrf := c.signIn()
		var n int
		_ = g.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM console_sessions`).Scan(&n)
		if n == 0 {
			t.Fatal("no session stored")
		}
		// Only the id's hash is stored.
		u, _ := url.Parse(g.srv.URL + "/console/")
		var id string
		for _, ck := range c.http.Jar.Cookies(u) {
			if ck.Name == "gw_console" {
				id = ck.Value
			}
		}
		var stored int
		_ = g.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM console_sessions WHERE id_hash = convert_to($1, 'UTF8')`, id).Scan(&stored)
		if id == "" || stored != 0 {
			t.Fatalf("session id %q stored as is", id)
		}
		t.Run("ErrNoCSRF", func(t *testing.T) {
			for _, form := range []url.Values{{}, {"csrf": {"forged"}}, {"csrf": {csrf + "x"}}} {
				code, _, page := c.do("POST", "/console/logout", form)
				if code != http.StatusForbidden || !strings.Contains(page, "CSRF") {
					t.Fatalf("logout with %v: %d", form, code)
				}
			}
			if code, _, _ := c.do("GET", "/console/", nil); code != 200 {
				t.Fatal("a refused form changed the session")
			}
		})
		t.Run("SignOutEverywhere", func(t *testing.T) {
			code, loc, _ := c.do("POST", "/console/logout", url.Values{"csrf": {csrf}})
			if code != http.StatusSeeOther || loc != "/console/login?out=1" {
				t.Fatalf("logout: %d %q", code, loc)
			}
			// The cookie was cleared here; the same id elsewhere is dead too.
			code, _, _ = c.do("GET", "/console/", nil)
			c2 := g.client(t)
			c2.http.Jar.SetCookies(u, []*http.Cookie{{Name: "gw_console", Value: id, Path: "/console"}})
			code2, _, _ := c2.do("GET", "/console/", nil)
			if code != http.StatusSeeOther || code2 != http.StatusSeeOther {
				t.Fatalf("after sign-out: %d, with the old id %d", code, code2)
			}
		})
	})
}

func TestConsole_Cookies(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, g *gateway, wantSecure bool, header ...string) {
		t.Helper()
		c := g.client(t)
		form := url.Values{}
		ck, _ := setCookie(t, c, "GET", "/console/login", form, "gw_console_login", header...)
		if ck == nil {
			t.Fatal("no sign-in form cookie")
		}
		c.http.Jar.SetCookies(mustURL(g.srv.URL+"/console/login"), []*http.Cookie{ck})
		s, code := setCookie(t, c, "POST", "/console/login", url.Values{"csrf": {ck.Value}, "token": {opsToken}}, "gw_console", header...)
		if s == nil {
			t.Fatalf("no session cookie (%d)", code)
		}
		if !s.HttpOnly || s.SameSite != http.SameSiteStrictMode || s.Path != "/console" || s.Secure != wantSecure || s.MaxAge != int((12*time.Hour).Seconds()) {
			t.Fatalf("session cookie %+v, want Secure=%v", s, wantSecure)
		}
	}
	t.Run("PlainHTTP", func(t *testing.T) { check(t, newGateway(t), false) })
	t.Run("TLS", func(t *testing.T) { check(t, newGateway(t, rigOptions{tls: true}), true) })
	t.Run("TrustedProxyTLS", func(t *testing.T) {
		g := newGateway(t, rigOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
		check(t, g, true, "X-Forwarded-Proto", "https")
	})
	t.Run("UntrustedForwardedProto", func(t *testing.T) {
		g := newGateway(t, rigOptions{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
		check(t, g, false, "X-Forwarded-Proto", "https")
	})
	t.Run("Headers", func(t *testing.T) {
		g := newGateway(t)
		resp, err := http.Get(g.srv.URL + "/console/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") ||
			resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("headers %v", resp.Header)
		}
	})
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestConsole_Expiry(t *testing.T) {
	t.Parallel()
	g := newGateway(t, rigOptions{ttl: time.Minute})
	c := g.client(t)
	c.signIn()
	if _, err := g.db.Pool.Exec(context.Background(), `UPDATE console_sessions SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := c.do("GET", "/console/", nil); code != http.StatusSeeOther {
		t.Fatalf("an expired session answered %d", code)
	}
}

func TestConsole_Language(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	c := g.client(t)
	if page := c.mustGet("/console/login"); !strings.Contains(page, `lang="zh-CN"`) || !strings.Contains(page, "运维 API 令牌") {
		t.Fatal("no Accept-Language: not Chinese")
	}
	if page := c.mustGet("/console/login", "Accept-Language", "en-US,en;q=0.9,zh;q=0.5"); !strings.Contains(page, `lang="en"`) || !strings.Contains(page, "Ops API token") {
		t.Fatal("Accept-Language en: not English")
	}
	if page := c.mustGet("/console/login", "Accept-Language", "zh-TW,en;q=0.5"); !strings.Contains(page, `lang="zh-CN"`) {
		t.Fatal("Accept-Language zh-TW: not Chinese")
	}
	code, loc, _ := c.do("GET", "/console/lang/en?next=/console/login", nil)
	if code != http.StatusSeeOther || loc != "/console/login" {
		t.Fatalf("switch: %d %q", code, loc)
	}
	if page := c.mustGet("/console/login", "Accept-Language", "zh-CN"); !strings.Contains(page, "Ops API token") {
		t.Fatal("the switch's cookie does not win over Accept-Language")
	}
	if code, loc, _ := c.do("GET", "/console/lang/en?next=https://evil.example/", nil); code != http.StatusSeeOther || loc != "/console/" {
		t.Fatalf("switch off the site: %d %q", code, loc)
	}
}

// TestConsole_Pages: every page answers, in both languages, on a gateway
// that received real signed notifications; none shows a token.
func TestConsole_Pages(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	grant := testkit.Sample(t, "auth-granted", testkit.AppID)
	send(t, g.srv.URL, testkit.Body(t, grant, testkit.AlipayKey()))
	sendAudits(t, g, testkit.MerchantAppID)
	failed := encryptedOrder(t)
	send(t, g.before.URL, testkit.Body(t, failed, testkit.PKI().Alipay.Key))
	c := g.client(t)
	c.signIn()
	var endpoint int64
	err := g.db.Pool.QueryRow(context.Background(), `INSERT INTO webhook_endpoints (url, secret) VALUES ('https://user:pw@isv.example/hook', 'whsec_c2VjcmV0c2VjcmV0c2VjcmV0') RETURNING id`).Scan(&endpoint)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{
		"/console/", "/console/merchants", "/console/merchants?q=2013&status=authorized", "/console/merchants?problem=expiring",
		"/console/merchants/" + testkit.MerchantAppID, "/console/mini-apps", "/console/mini-apps?status=audit_rejected",
		"/console/mini-apps/" + testkit.MerchantAppID, "/console/notifications", "/console/notifications?status=failed&since=2020-01-01T00:00",
		"/console/notifications/" + failed["notify_id"] + "?app_id=" + testkit.CertAppID, "/console/verify", "/console/webhooks",
		"/console/webhooks/1", "/console/static/console.css",
	}
	for _, lang := range []string{"zh-CN", "en"} {
		for _, p := range paths {
			page := c.mustGet(p, "Accept-Language", lang)
			for _, secret := range []string{"202301BB0c4f2a9c1ff34b1f8f0d7ea6f4d2fX01", "202301BBa6b9e0c9a1c84d4a9a3c4c5c6d7e8X01", "whsec_", ":pw@"} {
				if strings.Contains(page, secret) {
					t.Fatalf("%s shows %q", p, secret)
				}
			}
		}
	}
	for name, tc := range map[string]struct {
		path string
		code int
	}{
		"UnknownMerchant":     {"/console/merchants/nope", 404},
		"UnknownMiniApp":      {"/console/mini-apps/nope", 404},
		"UnknownNotification": {"/console/notifications/nope", 404},
		"BadStatus":           {"/console/notifications?status=done", 400},
		"BadParam":            {"/console/notifications?stauts=failed", 400},
		"BadCursor":           {"/console/notifications?cursor=!!", 400},
		"BadTime":             {"/console/notifications?since=yesterday", 400},
		"BadEndpoint":         {"/console/webhooks/x", 400},
		"UnknownEndpoint":     {"/console/webhooks/999", 404},
		"UnknownPage":         {"/console/nope", 404},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, page := c.do("GET", tc.path, nil); code != tc.code {
				t.Fatalf("%s: %d, want %d\n%s", tc.path, code, tc.code, page)
			}
		})
	}
}

// TestConsole_Actions: reprocess, retry and replay through the forms, with
// the session's CSRF token; each refused without it, changing nothing.
func TestConsole_Actions(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	failed := encryptedOrder(t)
	send(t, g.before.URL, testkit.Body(t, failed, testkit.PKI().Alipay.Key))
	c := g.client(t)
	csrf := c.signIn()
	path := "/console/notifications/" + failed["notify_id"] + "/reprocess"
	status := func() string {
		var s string
		_ = g.db.Pool.QueryRow(context.Background(), `SELECT status FROM notifications WHERE notify_id = $1`, failed["notify_id"]).Scan(&s)
		return s
	}
	if code, _, _ := c.do("POST", path, url.Values{"app_id": {testkit.CertAppID}}); code != http.StatusForbidden || status() != "failed" {
		t.Fatalf("reprocess without CSRF: %d, %s", code, status())
	}
	code, loc, _ := c.do("POST", path, url.Values{"app_id": {testkit.CertAppID}, "csrf": {csrf}})
	if code != http.StatusSeeOther || !strings.Contains(loc, "done=reprocessed") || status() != "applied" {
		t.Fatalf("reprocess: %d %q, %s", code, loc, status())
	}
	if page := c.mustGet(loc); !strings.Contains(page, "已重新处理") || strings.Contains(page, `id="reprocess"`) {
		t.Fatal("the page after reprocessing")
	}

	// A dead delivery, retried; an endpoint replayed.
	var endpoint, delivery int64
	ctx := context.Background()
	err := g.db.Pool.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, secret) VALUES ('https://isv.example/hook', 'whsec_c2VjcmV0c2VjcmV0c2VjcmV0') RETURNING id`).Scan(&endpoint)
	if err == nil {
		err = g.db.Pool.QueryRow(ctx, `INSERT INTO webhook_deliveries (endpoint_id, event_id, status, expires_at, attempts, last_error)
            SELECT $1, id, 'dead', now(), 12, 'connection refused' FROM events LIMIT 1 RETURNING id`, endpoint).Scan(&delivery)
	}
	if err != nil {
		t.Fatal(err)
	}
	if page := c.mustGet("/console/"); !strings.Contains(page, "/console/webhooks/1?status=dead") {
		t.Fatal("the overview does not show the dead delivery")
	}
	retry := "/console/webhooks/deliveries/" + itoa(delivery) + "/retry"
	if code, _, _ := c.do("POST", retry, url.Values{}); code != http.StatusForbidden {
		t.Fatalf("retry without CSRF: %d", code)
	}
	if code, loc, _ := c.do("POST", retry, url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || !strings.Contains(c.mustGet(loc), "st-pending") {
		t.Fatalf("retry: %d %q", code, loc)
	}
	replay := "/console/webhooks/" + itoa(endpoint) + "/replay"
	since := time.Now().Add(-time.Hour).In(time.FixedZone("CST", 8*3600)).Format("2006-01-02T15:04")
	if code, _, _ := c.do("POST", replay, url.Values{"since": {since}}); code != http.StatusForbidden {
		t.Fatalf("replay without CSRF: %d", code)
	}
	if code, loc, _ := c.do("POST", replay, url.Values{"since": {since}, "csrf": {csrf}}); code != http.StatusSeeOther || !strings.Contains(loc, "done=replayed") {
		t.Fatalf("replay: %d %q", code, loc)
	}
	var queued int
	_ = g.db.Pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, endpoint).Scan(&queued)
	if queued < 2 {
		t.Fatalf("%d deliveries after the replay", queued)
	}
	if code, _, _ := c.do("POST", "/console/notifications/nope/reprocess", url.Values{"csrf": {csrf}}); code != 404 {
		t.Fatalf("reprocess of an unknown notification: %d", code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

var msgKey = regexp.MustCompile(`\.T "([a-z0-9_.]+)"`)

// TestMessages: every message a template or the Go code names is in the
// table, in both languages.
func TestMessages(t *testing.T) {
	t.Parallel()
	var keys []string
	for _, dir := range []string{"templates", "."} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".html") && !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			b, err := os.ReadFile(dir + "/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgKey.FindAllStringSubmatch(string(b), -1) {
				keys = append(keys, m[1])
			}
			for _, m := range regexp.MustCompile(`"((?:nav|login|error|merchant|miniapp|notification|delivery|endpoint|verify|overview|flash)\.[a-z0-9_.]+)"`).FindAllStringSubmatch(string(b), -1) {
				keys = append(keys, m[1])
			}
		}
	}
	if len(keys) < 100 {
		t.Fatalf("found only %d message keys: is the scan still right?", len(keys))
	}
	for _, k := range keys {
		if k == "key" { // the package doc's example
			continue
		}
		if !console.HasMessage(k) {
			t.Errorf("message %q is not in messages.go in both languages", k)
		}
	}
	for _, k := range console.NavKeys() {
		if !console.HasMessage(k) {
			t.Errorf("no message for the nav entry %s", k)
		}
	}
	for _, code := range []string{notify.EINVALID, notify.ENOTFOUND, notify.EUNAUTHORIZED, notify.EFORBIDDEN, notify.EUNAVAILABLE, notify.EINTERNAL} {
		if !console.HasMessage("error." + code) {
			t.Errorf("no message for error code %s", code)
		}
	}
}

// TestConsole_TokenRemoved: a session ends when the token it was opened
// with is no longer configured (another replica, restarted without it).
func TestConsole_TokenRemoved(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	c := g.client(t)
	c.signIn()
	other := httptest.NewServer(httpapi.New(httpapi.Config{Logger: testkit.Logger(t), Store: g.db,
		Console: console.New(console.Config{Store: g.db, Tokens: []string{"a-new-token-only"}, Logger: testkit.Logger(t)})}))
	t.Cleanup(other.Close)
	u := mustURL(g.srv.URL + "/console/")
	req, _ := http.NewRequest("GET", other.URL+"/console/", nil)
	for _, ck := range c.http.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
		t.Fatalf("a session of a removed token: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _, _ := c.do("GET", "/console/", nil); code != 200 { // where the token still is, it still works
		t.Fatalf("%d", code)
	}
}
