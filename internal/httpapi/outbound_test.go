package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

// outboundGateway is a gateway with outbound calls to a simulator.
type outboundGateway struct {
	*gateway
	sim     *openapisim.Sim
	svc     *outbound.Service
	svcLogs *testkit.LogBuffer // what the outbound service logged
	offset  *atomic.Int64      // the outbound clock is ahead of now by this
}

// outboundOptions change newOutboundGateway's gateway.
type outboundOptions struct {
	otherApp bool
	batches  bool           // serve the batch routes (batchsend.Admin)
	cfg      httpapi.Config // the callback's limits and trusted proxies
}

func newOutboundGateway(t *testing.T, opts ...func(*outboundOptions)) *outboundGateway {
	t.Helper()
	// The callback's rate limit is lifted unless a test sets one.
	o := outboundOptions{cfg: httpapi.Config{
		CallbackClientLimit: httpapi.RateLimit{Every: time.Microsecond, Burst: 1000},
		CallbackGlobalLimit: httpapi.RateLimit{Every: time.Microsecond, Burst: 1000},
	}}
	for _, f := range opts {
		f(&o)
	}
	apps := []*alipay.App{testkit.KeyApp()}
	if o.otherApp {
		apps = append(apps, testkit.OtherApp())
	}
	var simApps []openapisim.App
	for _, a := range apps {
		simApps = append(simApps, testkit.SimApp(a))
	}
	sim := openapisim.Start(openapisim.Config{Apps: simApps, SignKey: testkit.AlipayKey()})
	t.Cleanup(sim.Close)
	db := pgtest.New(t)
	svcLogs, offset := &testkit.LogBuffer{}, &atomic.Int64{}
	svc, err := outbound.New(outbound.Config{
		Apps: apps, GatewayURL: sim.URL(), Store: db, Sealer: testkit.Sealer(t),
		Logger: testkit.Logger(t, svcLogs), Timeout: 2 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	o.cfg.Outbound = svc
	if o.batches {
		o.cfg.Batches = &batchsend.Admin{Store: db, Outbound: svc, Logger: testkit.Logger(t, svcLogs)}
		o.cfg.Webhooks = &webhook.Admin{AdminStore: db} // the events feed
	}
	return &outboundGateway{gateway: startGateway(t, db, rig{cfg: o.cfg}), sim: sim, svc: svc, svcLogs: svcLogs, offset: offset}
}

// withOtherApp adds testkit.OtherAppID to the gateway's ISV apps.
func withOtherApp(o *outboundOptions) { o.otherApp = true }

// call makes a request and returns the status, headers and body.
func (g *outboundGateway) call(t *testing.T, method, path, token, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, g.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// errorOf decodes an error body.
func errorOf(t *testing.T, body string) map[string]string {
	t.Helper()
	var b struct {
		Error map[string]string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	return b.Error
}

// state returns the state of a new authorization link for testkit.AppID,
// query-escaped.
func (g *outboundGateway) state(t *testing.T) string {
	t.Helper()
	return url.QueryEscape(g.link(t, testkit.AppID).State)
}

// link returns a new authorization link for appID, made by the service.
func (g *outboundGateway) link(t *testing.T, appID string) outbound.Link {
	t.Helper()
	l, err := g.svc.AuthorizationLink(outbound.LinkRequest{AppID: appID, RedirectURI: g.srv.URL + "/alipay/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// authorize completes the authorization flow for testkit.MerchantAppID through
// the callback.
func (g *outboundGateway) authorize(t *testing.T) {
	t.Helper()
	code := g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000888")
	if status, _, body := g.call(t, "GET", "/alipay/auth/callback?app_id="+testkit.AppID+"&app_auth_code="+code+"&source=alipay_app_auth&state="+g.state(t), "", ""); status != 200 {
		t.Fatalf("callback: %d %s", status, body)
	}
}

const templateMessage = `{"to_user_id":"2088000000000001","user_template_id":"MDI4YzIx","page":"pages/index","data":{"keyword1":{"value":"12:00"}}}`

func onBehalfOf(m, authAppID string) string {
	return strings.Replace(m, "{", fmt.Sprintf(`{"auth_app_id":%q,`, authAppID), 1)
}

func TestOutbound_SendTemplateMessage(t *testing.T) {
	t.Parallel()
	g := newOutboundGateway(t)
	send := openapisim.MethodTemplateMessageSend

	t.Run("OK", func(t *testing.T) {
		status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, templateMessage)
		var s outbound.Send
		if status != 200 || json.Unmarshal([]byte(body), &s) != nil || s.Status != "sent" || s.Code != "10000" || s.AppID != testkit.AppID {
			t.Fatalf("%d %s", status, body)
		}
		if len(g.sim.Sent()) != 1 {
			t.Fatal("not sent")
		}
	})
	t.Run("OKIdempotent", func(t *testing.T) {
		calls := len(g.sim.Calls(send))
		_, h1, b1 := g.call(t, "POST", "/v1/template-messages", opsToken, templateMessage, "Idempotency-Key", "k-1")
		status, h2, b2 := g.call(t, "POST", "/v1/template-messages", opsToken, templateMessage, "Idempotency-Key", "k-1")
		if status != 200 || h1.Get("Idempotent-Replayed") != "" || h2.Get("Idempotent-Replayed") != "true" || b1 != b2 {
			t.Fatalf("%d %q %q", status, b1, b2)
		}
		if len(g.sim.Calls(send)) != calls+1 {
			t.Fatal("sent twice")
		}
	})
	t.Run("ErrBusiness", func(t *testing.T) {
		g.sim.Fail(send, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "USER_TEMPLATE_ILLEGAL", SubMsg: "模板不合法"})
		status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, templateMessage)
		e := errorOf(t, body)
		if status != 422 || e["code"] != "alipay_business_error" || e["alipay_code"] != "40004" ||
			e["alipay_sub_code"] != "USER_TEMPLATE_ILLEGAL" || e["alipay_sub_msg"] != "模板不合法" {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("ErrUpstream", func(t *testing.T) {
		g.sim.Fail(send, openapisim.Fault{HTTPStatus: 503})
		status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, templateMessage)
		if status != 502 || errorOf(t, body)["code"] != "upstream_error" {
			t.Fatalf("%d %s", status, body)
		}
		var st string
		if err := g.db.Pool.QueryRow(t.Context(), `SELECT status FROM template_messages ORDER BY id DESC LIMIT 1`).Scan(&st); err != nil || st != "unknown" {
			t.Fatalf("recorded %q (%v); want unknown, never sent", st, err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		calls := len(g.sim.Calls(send))
		for _, body := range []string{
			`nope`,
			`{"to_user_id":"2088000000000001","user_template_id":"x","page":"p","data":{"k":{"value":"v"}},"extra":1}`,
			`{"user_template_id":"x","page":"p","data":{"k":{"value":"v"}}}`,
			`{"to_user_id":"2088000000000001","user_template_id":"x","page":"p","data":[1]}`,
		} {
			if status, _, b := g.call(t, "POST", "/v1/template-messages", opsToken, body); status != 400 || errorOf(t, b)["code"] != "invalid" {
				t.Errorf("%s: %d %s", body, status, b)
			}
		}
		if status, _, _ := g.call(t, "POST", "/v1/template-messages", opsToken, templateMessage, "Idempotency-Key", strings.Repeat("k", 300)); status != 400 {
			t.Errorf("long key: %d", status)
		}
		big := `{"to_user_id":"2088000000000001","user_template_id":"x","page":"p","data":{"k":{"value":"` + strings.Repeat("v", 70<<10) + `"}}}`
		if status, _, _ := g.call(t, "POST", "/v1/template-messages", opsToken, big); status != 413 {
			t.Errorf("big body: %d", status)
		}
		if len(g.sim.Calls(send)) != calls {
			t.Fatal("an invalid request reached Alipay")
		}
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		if status, _, _ := g.call(t, "POST", "/v1/template-messages", "", templateMessage); status != 401 {
			t.Fatalf("%d", status)
		}
	})
	t.Run("ErrUnknownAuthorization", func(t *testing.T) {
		status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, onBehalfOf(templateMessage, "2021000000000000"))
		if status != 404 {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("OnBehalfThenCancelled", func(t *testing.T) {
		g.authorize(t)
		if status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, onBehalfOf(templateMessage, testkit.MerchantAppID)); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		// The merchant cancels: Alipay's notification arrives, signed.
		biz := fmt.Sprintf(`{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000888","app_auth_token":"x"}`, testkit.AppID, testkit.MerchantAppID)
		g.mustAccept(t, testkit.Body(t, testkit.Form(testkit.AppID, notify.MethodAuthCancelled, biz, time.Now().Add(time.Second).UnixMilli()), testkit.AlipayKey()))
		calls := len(g.sim.Calls(send))
		status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, onBehalfOf(templateMessage, testkit.MerchantAppID))
		if status != 409 || !strings.Contains(errorOf(t, body)["message"], "cancelled") {
			t.Fatalf("%d %s", status, body)
		}
		if len(g.sim.Calls(send)) != calls {
			t.Fatal("the cancelled token was used")
		}
	})
}

func TestOutbound_GetSubscriptions(t *testing.T) {
	t.Parallel()
	g := newOutboundGateway(t)
	g.sim.Subscribe("2088000000000001", "t1", openapisim.Subscription{State: "1", Type: "longterm"})
	query := openapisim.MethodSubscribeQuery
	t.Run("OK", func(t *testing.T) {
		status, _, body := g.call(t, "GET", "/v1/users/2088000000000001/subscriptions?template_id=t1,%20t2", opsToken, "")
		var s outbound.Subscriptions
		if status != 200 || json.Unmarshal([]byte(body), &s) != nil || len(s.Relations) != 1 || !s.Relations[0].Subscribed {
			t.Fatalf("%d %s", status, body)
		}
		calls := g.sim.Calls(query)
		if ids := calls[len(calls)-1].Biz["template_id_list"].([]any); len(ids) != 2 || ids[1] != "t2" {
			t.Fatalf("%v", ids)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		calls := len(g.sim.Calls(query))
		for _, q := range []string{"?template_id=a,b,c,d", "", "?template_id=a&other=1", "?template_id=a&template_id=b", "?template_id=a,,b"} {
			if status, _, body := g.call(t, "GET", "/v1/users/2088000000000001/subscriptions"+q, opsToken, ""); status != 400 {
				t.Errorf("%q: %d %s", q, status, body)
			}
		}
		if len(g.sim.Calls(query)) != calls {
			t.Fatal("an invalid query reached Alipay")
		}
	})
	t.Run("ErrUnknownAuthorization", func(t *testing.T) {
		status, _, _ := g.call(t, "GET", "/v1/users/2088000000000001/subscriptions?template_id=t1&auth_app_id=2021000000000000", opsToken, "")
		if status != 404 {
			t.Fatalf("%d", status)
		}
	})
}

// callback calls the authorization callback with app_id, app_auth_code and
// state (query-escaped here; left out when empty) and returns the status,
// headers and page.
func (g *outboundGateway) callback(t *testing.T, appID, code, state string, extra ...string) (int, http.Header, string) {
	t.Helper()
	q := url.Values{"source": {"alipay_app_auth"}}
	for k, v := range map[string]string{"app_id": appID, "app_auth_code": code, "state": state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Add(extra[i], extra[i+1])
	}
	return g.call(t, "GET", "/alipay/auth/callback?"+q.Encode(), "", "")
}

// failedPage fails unless page is the generic failure page with lines and
// a reference that the gateway's log has too, and returns the reference.
func (g *outboundGateway) failedPage(t *testing.T, page string, lines []string) string {
	t.Helper()
	m := regexp.MustCompile(`Reference: <code>([0-9a-f]{12})</code>`).FindStringSubmatch(page)
	if !strings.Contains(page, "Authorization failed") || m == nil {
		t.Fatalf("not the failure page: %s", page)
	}
	for _, l := range lines {
		if !strings.Contains(page, l) {
			t.Fatalf("page lacks %q: %s", l, page)
		}
	}
	// Only the title, the class's lines and the reference.
	if n := strings.Count(page, "<p>"); n != len(lines)+1 {
		t.Fatalf("page has %d paragraphs, want %d: %s", n, len(lines)+1, page)
	}
	if !strings.Contains(g.logs.String(), `"ref":"`+m[1]+`"`) {
		t.Fatalf("reference %s is not in the log", m[1])
	}
	return m[1]
}

// logLine returns the gateway's log line with ref.
func (g *outboundGateway) logLine(t *testing.T, ref string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(g.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["ref"] == ref {
			return m
		}
	}
	t.Fatalf("no log line with ref %s", ref)
	return nil
}

// Page lines, as a merchant's browser shows them.
var (
	linesBadLink   = []string{"授权链接无效或已过期", "This authorization link is invalid or has expired. Please start the authorization again."}
	linesRefused   = []string{"支付宝未接受本次授权", "Alipay did not accept this authorization. Please start the authorization again."}
	linesTemporary = []string{"暂时无法完成授权", "The authorization could not be completed for now. Please try again later."}
	linesBusy      = []string{"请求过于频繁", "Too many attempts. Please wait a minute and try again."}
)

func TestOutbound_AuthCallback(t *testing.T) {
	t.Parallel()
	g := newOutboundGateway(t, withOtherApp)
	t.Run("OK", func(t *testing.T) {
		code := g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000888")
		status, h, body := g.callback(t, testkit.AppID, code, g.link(t, testkit.AppID).State)
		if status != 200 || !strings.Contains(body, "Authorization complete") || !strings.Contains(body, testkit.MerchantAppID) ||
			!strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d %s", status, body)
		}
		token, refresh := g.sim.Tokens(testkit.AppID, testkit.MerchantAppID)
		if token == "" || strings.Contains(body, token) || strings.Contains(body, refresh) {
			t.Fatal("the page shows a token")
		}
		var (
			st     string
			sealed []byte
		)
		if err := g.db.Pool.QueryRow(t.Context(), `SELECT status, app_auth_token FROM authorizations WHERE auth_app_id = $1`, testkit.MerchantAppID).
			Scan(&st, &sealed); err != nil {
			t.Fatal(err)
		}
		opened, err := testkit.Sealer(t).Open(sealed, notify.TokenOwner(testkit.AppID, testkit.MerchantAppID))
		if st != "authorized" || string(sealed) == token || err != nil || opened != token {
			t.Fatalf("stored %s, opens to %q (%v)", st, opened, err)
		}
	})

	// Refused states: a 400 and the generic page, and Alipay is never
	// called, so the code is still good afterwards.
	good := g.link(t, testkit.AppID).State
	g.offset.Store(int64(-2 * time.Hour))
	expired := g.link(t, testkit.AppID).State // issued two hours ago, for an hour
	g.offset.Store(0)
	raw, _ := base64.StdEncoding.DecodeString(good)
	raw[10] ^= 0x40 // in the nonce: well-formed, its tag no longer matches
	forged := base64.StdEncoding.EncodeToString(raw)
	for _, c := range []struct {
		name, appID, state, reason string
	}{
		{"ErrNoState", testkit.AppID, "", "missing_state"},
		{"ErrMalformedState", testkit.AppID, "definitely not a state", "malformed_state"},
		{"ErrForgedState", testkit.AppID, forged, "forged_state"},
		{"ErrExpiredState", testkit.AppID, expired, "expired_state"},
		{"ErrOtherAppState", testkit.OtherAppID, good, "other_app_state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			requests := g.sim.Requests()
			code := g.sim.IssueCode(c.appID, testkit.MerchantAppID, "2088000000000888")
			status, _, body := g.callback(t, c.appID, code, c.state)
			if status != 400 {
				t.Fatalf("%d %s", status, body)
			}
			ref := g.failedPage(t, body, linesBadLink)
			if g.sim.Requests() != requests {
				t.Fatal("a refused state reached Alipay")
			}
			line := g.logLine(t, ref)
			if line["reason"] != c.reason || line["app_id"] != c.appID || line["class"] != "bad_link" || line["status"] != 400.0 {
				t.Fatalf("log %v", line)
			}
			if strings.Contains(g.logs.String()+g.svcLogs.String(), code) {
				t.Fatal("the code is in the log")
			}
			// The code was not used: a good state redeems it.
			if status, _, body := g.callback(t, c.appID, code, g.link(t, c.appID).State); status != 200 {
				t.Fatalf("the refused code: %d %s", status, body)
			}
		})
	}
	t.Run("ErrDuplicateState", func(t *testing.T) {
		requests := g.sim.Requests()
		status, _, body := g.callback(t, testkit.AppID, g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, ""), good, "state", good)
		if status != 400 || g.sim.Requests() != requests {
			t.Fatalf("%d %s", status, body)
		}
		if line := g.logLine(t, g.failedPage(t, body, linesBadLink)); line["reason"] != "duplicate_parameter" {
			t.Fatalf("log %v", line)
		}
	})
	t.Run("ErrMissingCode", func(t *testing.T) {
		status, _, body := g.callback(t, testkit.AppID, "", good)
		if status != 400 {
			t.Fatalf("%d %s", status, body)
		}
		g.failedPage(t, body, linesBadLink)
	})
	t.Run("ErrBadCode", func(t *testing.T) {
		status, _, body := g.callback(t, testkit.AppID, "<script>", good)
		if status != 422 || strings.Contains(body, "isv.code-invalid") || strings.Contains(body, "script") {
			t.Fatalf("%d %s", status, body)
		}
		if line := g.logLine(t, g.failedPage(t, body, linesRefused)); !strings.Contains(line["error"].(string), "isv.code-invalid") {
			t.Fatalf("the log lacks Alipay's sub_code: %v", line)
		}
	})
	t.Run("ErrLongAppID", func(t *testing.T) {
		status, _, body := g.callback(t, strings.Repeat("9", 5000), "x", good)
		if status != 400 {
			t.Fatalf("%d %s", status, body)
		}
		if line := g.logLine(t, g.failedPage(t, body, linesBadLink)); line["reason"] != "bad_app_id" || len(line["app_id"].(string)) > 100 {
			t.Fatalf("log %v", line)
		}
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		status, _, body := g.callback(t, "2021000000009999", "x", good)
		if status != 404 || strings.Contains(body, "2021000000009999") {
			t.Fatalf("%d %s", status, body)
		}
		g.failedPage(t, body, linesBadLink)
	})
}

// TestOutbound_AuthCallback_ErrorPage: whatever goes wrong behind the
// callback, the page says only its class; the log has the detail.
func TestOutbound_AuthCallback_ErrorPage(t *testing.T) {
	t.Parallel()
	g := newOutboundGateway(t)
	leaks := []string{"dial tcp", "connection refused", "127.0.0.1", "HTTP 503", "503", "upstream", "Alipay answered", "gateway.do"}
	// temporaryPage checks a callback's answer: 502 and the page of a
	// temporary failure, showing nothing of the failure itself; it returns
	// the page's reference.
	temporaryPage := func(t *testing.T, status int, body string) string {
		t.Helper()
		if status != 502 {
			t.Fatalf("%d %s", status, body)
		}
		ref := g.failedPage(t, body, linesTemporary)
		for _, l := range leaks {
			if strings.Contains(body, l) {
				t.Fatalf("the page shows %q: %s", l, body)
			}
		}
		return ref
	}
	t.Run("ErrUpstream", func(t *testing.T) {
		g.sim.Fail(openapisim.MethodAuthTokenApp, openapisim.Fault{HTTPStatus: 503})
		status, _, body := g.callback(t, testkit.AppID, g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, ""), g.link(t, testkit.AppID).State)
		ref := temporaryPage(t, status, body)
		if line := g.logLine(t, ref); !strings.Contains(line["error"].(string), "HTTP 503") || line["class"] != "temporary" {
			t.Fatalf("log %v", line)
		}
	})
	t.Run("ErrUnreachable", func(t *testing.T) {
		state := g.link(t, testkit.AppID).State
		g.sim.Close() // Alipay is gone: the dial is refused
		status, _, body := g.callback(t, testkit.AppID, "code-never-issued", state)
		ref := temporaryPage(t, status, body)
		line := g.logLine(t, ref)
		if e := line["error"].(string); !strings.Contains(e, "connection refused") || line["reason"] != "alipay_unreachable" {
			t.Fatalf("log %v", line)
		}
		if strings.Contains(g.logs.String()+g.svcLogs.String(), "code-never-issued") {
			t.Fatal("the code is in the log")
		}
	})
}

// TestOutbound_AuthCallback_RateLimit: the callback's limit, per client and
// in all; a refused request gets 429 and the generic page, and reaches
// nothing behind.
func TestOutbound_AuthCallback_RateLimit(t *testing.T) {
	t.Parallel()
	t.Run("ErrClientLimit", func(t *testing.T) {
		g := newOutboundGateway(t, func(o *outboundOptions) { o.cfg = httpapi.Config{} }) // the defaults
		state := g.link(t, testkit.AppID).State
		for i := 0; i < 5; i++ { // the burst; refused states count too
			if status, _, body := g.callback(t, testkit.AppID, "", state); status != 400 {
				t.Fatalf("request %d: %d %s", i+1, status, body)
			}
		}
		requests := g.sim.Requests()
		code := g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "")
		status, h, body := g.callback(t, testkit.AppID, code, state)
		if status != 429 || h.Get("Retry-After") != "6" || g.sim.Requests() != requests {
			t.Fatalf("%d %v %s", status, h, body)
		}
		if line := g.logLine(t, g.failedPage(t, body, linesBusy)); line["reason"] != "client_rate" || line["client"] != "127.0.0.1" {
			t.Fatalf("log %v", line)
		}
		// X-Forwarded-For is not trusted without TRUSTED_PROXIES.
		req, _ := http.NewRequest("GET", g.srv.URL+"/alipay/auth/callback?app_id="+testkit.AppID, nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 {
			t.Fatalf("a forged X-Forwarded-For got %d", resp.StatusCode)
		}
	})
	t.Run("ErrGlobalLimit", func(t *testing.T) {
		g := newOutboundGateway(t, func(o *outboundOptions) {
			o.cfg = httpapi.Config{
				CallbackGlobalLimit: httpapi.RateLimit{Every: time.Hour, Burst: 7},
				TrustedProxies:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			}
		})
		from := func(client string) int {
			req, _ := http.NewRequest("GET", g.srv.URL+"/alipay/auth/callback?app_id="+testkit.AppID, nil)
			req.Header.Set("X-Forwarded-For", client)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for i := 0; i < 5; i++ {
			from("198.51.100.1")
		}
		if got := from("198.51.100.1"); got != 429 {
			t.Fatalf("the sixth from one client: %d", got)
		}
		if got := from("198.51.100.2"); got != 400 {
			t.Fatalf("another client behind the trusted proxy: %d", got)
		}
		from("198.51.100.2")
		if got := from("198.51.100.3"); got != 429 {
			t.Fatalf("past the global cap: %d", got)
		}
		if !strings.Contains(g.logs.String(), `"reason":"global_rate"`) {
			t.Fatal("no global_rate line")
		}
	})
}

// TestOutbound_AuthorizationLinks: POST /v1/authorization-links, and its
// link's way through Alipay (simulated) back to the callback.
func TestOutbound_AuthorizationLinks(t *testing.T) {
	t.Parallel()
	g := newOutboundGateway(t)
	callback := g.srv.URL + "/alipay/auth/callback"
	post := func(t *testing.T, body string) (int, string) {
		t.Helper()
		status, _, b := g.call(t, "POST", "/v1/authorization-links", opsToken, body)
		return status, b
	}
	var link outbound.Link
	t.Run("OK", func(t *testing.T) {
		status, body := post(t, fmt.Sprintf(`{"redirect_uri":%q}`, callback))
		var raw map[string]any
		if status != 200 || json.Unmarshal([]byte(body), &raw) != nil || len(raw) != 3 || json.Unmarshal([]byte(body), &link) != nil {
			t.Fatalf("%d %s", status, body)
		}
		u, err := url.Parse(link.URL)
		if err != nil || u.Scheme+"://"+u.Host+u.Path != outbound.DefaultAuthURL || u.Query().Get("app_id") != testkit.AppID ||
			u.Query().Get("redirect_uri") != callback || u.Query().Get("state") != link.State {
			t.Fatalf("%s", link.URL)
		}
		if d := time.Until(link.ExpiresAt); d < 59*time.Minute || d > time.Hour {
			t.Fatalf("expires_at %v", link.ExpiresAt)
		}
	})
	t.Run("OKRoundTrip", func(t *testing.T) {
		// Alipay sends the browser to redirect_uri with app_id,
		// app_auth_code and the state, unchanged.
		u, _ := url.Parse(link.URL)
		redirect, _ := url.Parse(u.Query().Get("redirect_uri"))
		q := redirect.Query()
		q.Set("app_id", u.Query().Get("app_id"))
		q.Set("source", "alipay_app_auth")
		q.Set("app_auth_code", g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000888"))
		q.Set("state", u.Query().Get("state"))
		redirect.RawQuery = q.Encode()
		status, _, body := g.call(t, "GET", strings.TrimPrefix(redirect.String(), g.srv.URL), "", "")
		if status != 200 || !strings.Contains(body, testkit.MerchantAppID) {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("OKRoundTripUnescaped", func(t *testing.T) {
		// Should Alipay append the state as it is, a "+" reads as a space.
		var l outbound.Link
		for l = g.link(t, testkit.AppID); !strings.ContainsAny(l.State, "+/"); l = g.link(t, testkit.AppID) {
		}
		code := g.sim.IssueCode(testkit.AppID, testkit.MerchantAppID, "2088000000000888")
		status, _, body := g.call(t, "GET", "/alipay/auth/callback?app_id="+testkit.AppID+"&app_auth_code="+code+"&state="+l.State, "", "")
		if status != 200 {
			t.Fatalf("%s: %d %s", l.State, status, body)
		}
	})
	t.Run("OKTTL", func(t *testing.T) {
		status, body := post(t, fmt.Sprintf(`{"app_id":%q,"redirect_uri":"http://localhost:8080/alipay/auth/callback","ttl_seconds":600}`, testkit.AppID))
		var l outbound.Link
		if status != 200 || json.Unmarshal([]byte(body), &l) != nil {
			t.Fatalf("%d %s", status, body)
		}
		if d := time.Until(l.ExpiresAt); d < 9*time.Minute || d > 10*time.Minute {
			t.Fatalf("expires_at %v", l.ExpiresAt)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, body := range []string{
			`{}`,
			`{"redirect_uri":""}`,
			`{"redirect_uri":"http://gw.example.com/alipay/auth/callback"}`,
			`{"redirect_uri":"/alipay/auth/callback"}`,
			`{"redirect_uri":"https://gw.example.com/cb#frag"}`,
			`{"redirect_uri":"https://gw.example.com/cb?state=x"}`,
			`{"redirect_uri":"https://gw.example.com/cb","ttl_seconds":0}`,
			`{"redirect_uri":"https://gw.example.com/cb","ttl_seconds":86401}`,
			`{"redirect_uri":"https://gw.example.com/cb","ttl_seconds":"600"}`,
			`{"redirect_uri":"https://gw.example.com/cb","scope":"all"}`,
			`nope`,
		} {
			if status, b := post(t, body); status != 400 || errorOf(t, b)["code"] != "invalid" {
				t.Errorf("%s: %d %s", body, status, b)
			}
		}
		if status, _, _ := g.call(t, "POST", "/v1/authorization-links?app_id=1", opsToken, `{"redirect_uri":"https://gw.example.com/cb"}`); status != 400 {
			t.Errorf("a query parameter: %d", status)
		}
		if status, _ := post(t, `{"redirect_uri":"https://gw.example.com/`+strings.Repeat("a", 9<<10)+`"}`); status != 413 {
			t.Errorf("a big body: %d", status)
		}
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		if status, b := post(t, `{"app_id":"2021000000009999","redirect_uri":"https://gw.example.com/cb"}`); status != 404 {
			t.Fatalf("%d %s", status, b)
		}
	})
	t.Run("ErrUnauthorized", func(t *testing.T) {
		if status, _, _ := g.call(t, "POST", "/v1/authorization-links", "", `{"redirect_uri":"https://gw.example.com/cb"}`); status != 401 {
			t.Fatalf("%d", status)
		}
	})
}
