package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
)

// outboundApp is the public-key mode app's own key, for outbound calls;
// Alipay's key is keyApp, as for its notifications.
var outboundApp = devpki.MustNewKey()

const outboundMerchant = "2021000000000888"

// outboundGateway is a gateway with outbound calls to a simulator.
type outboundGateway struct {
	*gateway
	sim *openapisim.Sim
	svc *outbound.Service
}

func newOutboundGateway(t *testing.T) *outboundGateway {
	t.Helper()
	sim := openapisim.Start(openapisim.Config{
		Apps:    []openapisim.App{{ID: keyAppID, Pub: &outboundApp.PublicKey}},
		SignKey: keyApp,
	})
	t.Cleanup(sim.Close)
	db := pgtest.New(t, nil)
	svc, err := outbound.New(outbound.Config{
		Apps:       []*alipay.App{{ID: keyAppID, Keys: []alipay.Key{{Pub: &keyApp.PublicKey}}, PrivateKey: outboundApp}},
		GatewayURL: sim.URL(), Store: db, Sealer: pgtest.Sealer(t),
		Logger: zerolog.New(zerolog.NewTestWriter(t)), Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &outboundGateway{gateway: startGatewayWith(t, db, httpapi.Config{Outbound: svc}), sim: sim, svc: svc}
}

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

// state returns the state of a new authorization link for keyAppID.
func (g *outboundGateway) state(t *testing.T) string {
	t.Helper()
	l, err := g.svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: g.srv.URL + "/alipay/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	return url.QueryEscape(l.State)
}

// authorize completes the authorization flow for outboundMerchant through
// the callback.
func (g *outboundGateway) authorize(t *testing.T) {
	t.Helper()
	code := g.sim.IssueCode(keyAppID, outboundMerchant, "2088000000000888")
	if status, _, body := g.call(t, "GET", "/alipay/auth/callback?app_id="+keyAppID+"&app_auth_code="+code+"&source=alipay_app_auth&state="+g.state(t), "", ""); status != 200 {
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
		if status != 200 || json.Unmarshal([]byte(body), &s) != nil || s.Status != "sent" || s.Code != "10000" || s.AppID != keyAppID {
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
		if status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, onBehalfOf(templateMessage, outboundMerchant)); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		// The merchant cancels: Alipay's notification arrives, signed.
		biz := fmt.Sprintf(`{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000888","app_auth_token":"x"}`, keyAppID, outboundMerchant)
		g.mustAccept(t, signed(t, form(keyAppID, notify.MethodAuthCancelled, biz, time.Now().Add(time.Second).UnixMilli()), keyApp))
		calls := len(g.sim.Calls(send))
		status, _, body := g.call(t, "POST", "/v1/template-messages", opsToken, onBehalfOf(templateMessage, outboundMerchant))
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

func TestOutbound_AuthCallback(t *testing.T) {
	t.Parallel()
	g := newOutboundGateway(t)
	t.Run("OK", func(t *testing.T) {
		code := g.sim.IssueCode(keyAppID, outboundMerchant, "2088000000000888")
		status, h, body := g.call(t, "GET", "/alipay/auth/callback?app_id="+keyAppID+"&app_auth_code="+code+"&state="+g.state(t), "", "")
		if status != 200 || !strings.Contains(body, "Authorization complete") || !strings.Contains(body, outboundMerchant) ||
			!strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Fatalf("%d %s", status, body)
		}
		token, refresh := g.sim.Tokens(keyAppID, outboundMerchant)
		if token == "" || strings.Contains(body, token) || strings.Contains(body, refresh) {
			t.Fatal("the page shows a token")
		}
		var (
			st     string
			sealed []byte
		)
		if err := g.db.Pool.QueryRow(t.Context(), `SELECT status, app_auth_token FROM authorizations WHERE auth_app_id = $1`, outboundMerchant).
			Scan(&st, &sealed); err != nil {
			t.Fatal(err)
		}
		opened, err := pgtest.Sealer(t).Open(sealed, notify.TokenOwner(keyAppID, outboundMerchant))
		if st != "authorized" || string(sealed) == token || err != nil || opened != token {
			t.Fatalf("stored %s, opens to %q (%v)", st, opened, err)
		}
	})
	t.Run("ErrMissingCode", func(t *testing.T) {
		if status, _, body := g.call(t, "GET", "/alipay/auth/callback?app_id="+keyAppID+"&state="+g.state(t), "", ""); status != 400 || !strings.Contains(body, "Authorization failed") {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("ErrBadCode", func(t *testing.T) {
		status, _, body := g.call(t, "GET", "/alipay/auth/callback?app_id="+keyAppID+"&app_auth_code=%3Cscript%3E&state="+g.state(t), "", "")
		if status != 422 || !strings.Contains(body, "isv.code-invalid") || strings.Contains(body, "<script>") {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		if status, _, _ := g.call(t, "GET", "/alipay/auth/callback?app_id=2021000000009999&app_auth_code=x", "", ""); status != 404 {
			t.Fatalf("%d", status)
		}
	})
}
