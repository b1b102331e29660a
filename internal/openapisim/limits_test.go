package openapisim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	sw "github.com/smartwalle/alipay/v3"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const sendKey = "alipay_open_app_mini_templatemessage_send_response"

// newSim starts a simulator for testkit.AppID (and OtherAppID, with the
// same key), answers signed by testkit.AlipayKey.
func newSim(t *testing.T, lean bool) *openapisim.Sim {
	t.Helper()
	sim := openapisim.Start(openapisim.Config{
		Apps: []openapisim.App{{ID: testkit.AppID, Pub: &testkit.AppKey().PublicKey},
			{ID: testkit.OtherAppID, Pub: &testkit.AppKey().PublicKey}},
		SignKey: testkit.AlipayKey(), Lean: lean,
	})
	t.Cleanup(sim.Close)
	return sim
}

// sendBiz is a send's biz_content to user.
func sendBiz(user string) string {
	return `{"to_user_id":"` + user + `","user_template_id":"tpl","page":"pages/index","data":"{\"keyword1\":{\"value\":\"x\"}}"}`
}

// sendTo sends a template message to user for appID and returns the
// answer's code and sub_code, failing unless it is signed by Alipay's key.
func sendTo(t *testing.T, c *http.Client, sim *openapisim.Sim, appID, user string, extra url.Values) (string, string) {
	t.Helper()
	p := request(t, openapisim.MethodTemplateMessageSend, sendBiz(user), testkit.AppKey(), extra)
	if appID != testkit.AppID {
		p.Set("app_id", appID)
		p.Del("sign")
		sig, err := devpki.SignRSA2(testkit.AppKey(), []byte(openapisim.SignedContent(p)))
		if err != nil {
			t.Fatal(err)
		}
		p.Set("sign", sig)
	}
	code, raw := post(t, c, sim, p)
	if code != 200 || raw[sendKey] == nil {
		t.Fatalf("HTTP %d %v", code, raw)
	}
	if !signedBy(raw, sendKey, &testkit.AlipayKey().PublicKey) {
		t.Fatalf("answer %s not signed by Alipay's key", raw[sendKey])
	}
	return field(t, raw[sendKey], "code"), field(t, raw[sendKey], "sub_code")
}

func user(i int) string { return fmt.Sprintf("2088%012d", i) }

func TestSim_SetRateLimit(t *testing.T) {
	t.Parallel()
	c := &http.Client{Timeout: 5 * time.Second}

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, false)
		sim.SetRateLimit(testkit.AppID, 5, 2)
		var ok, limited int
		for i := range 6 {
			switch code, sub := sendTo(t, c, sim, testkit.AppID, user(i), nil); {
			case code == "10000":
				ok++
			case code == "40005" && sub == openapisim.SubCodeCallLimited:
				limited++
			default:
				t.Fatalf("answer %s %s", code, sub)
			}
		}
		// The burst of 2, and at most one token refilled meanwhile.
		if ok < 2 || ok > 3 || ok+limited != 6 {
			t.Fatalf("%d sent, %d limited", ok, limited)
		}
		st := sim.Stats()
		if st.RateLimited != limited || st.Sent != ok || st.Calls != ok || len(sim.Sent()) != ok || len(sim.SendTimes()) != ok {
			t.Fatalf("stats %+v, sent %d", st, len(sim.Sent()))
		}
		// Another app has its own budget.
		if code, _ := sendTo(t, c, sim, testkit.OtherAppID, user(100), nil); code != "10000" {
			t.Fatalf("other app: %s", code)
		}
		// A token a fifth of a second.
		time.Sleep(250 * time.Millisecond)
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(101), nil); code != "10000" {
			t.Fatalf("after a refill: %s", code)
		}
		sim.SetRateLimit(testkit.AppID, 0, 0)
		for i := range 5 {
			if code, _ := sendTo(t, c, sim, testkit.AppID, user(200+i), nil); code != "10000" {
				t.Fatalf("limit removed: %s", code)
			}
		}
	})
	t.Run("OKSmartwalle", func(t *testing.T) {
		// The gateway's client reads the limited answer as a verified
		// error answer with code 40005.
		t.Parallel()
		sim := newSim(t, false)
		sim.SetRateLimit(testkit.AppID, 0.001, 1)
		key, err := devpki.PrivateKeyPKCS8PEM(testkit.AppKey())
		if err != nil {
			t.Fatal(err)
		}
		pub, err := devpki.PublicKeyBase64(&testkit.AlipayKey().PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := sw.New(testkit.AppID, string(key), false, sw.WithSandboxGateway(sim.URL()), sw.WithHTTPClient(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.LoadAliPayPublicKey(pub); err != nil {
			t.Fatal(err)
		}
		codes := []string{}
		for i := range 2 {
			p := sw.NewPayload(openapisim.MethodTemplateMessageSend)
			for k, v := range map[string]any{"to_user_id": user(i), "user_template_id": "tpl", "page": "p", "data": `{"keyword1":{"value":"x"}}`} {
				p.AddBizField(k, v)
			}
			var ans struct{ sw.Error }
			if err := cl.Request(context.Background(), p, &ans); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			codes = append(codes, string(ans.Code)+" "+ans.SubCode)
		}
		if codes[0] != "10000 " || codes[1] != "40005 "+openapisim.SubCodeCallLimited {
			t.Fatalf("answers %q", codes)
		}
	})
}

func TestSim_SetFailure(t *testing.T) {
	t.Parallel()
	c := &http.Client{Timeout: 5 * time.Second}

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, true)
		const share, n = 0.3, 200
		sim.SetFailure(openapisim.MethodTemplateMessageSend, share, openapisim.Fault{Code: "20000", SubCode: "isp.unknow-error"})
		for attempt := 1; attempt <= 2; attempt++ {
			failed := 0
			for i := range n {
				code, sub := sendTo(t, c, sim, testkit.AppID, user(i), nil)
				want := openapisim.Chosen(user(i), attempt, share)
				if (code == "20000") != want || (want && sub != "isp.unknow-error") {
					t.Fatalf("attempt %d user %d: %s %s, chosen %v", attempt, i, code, sub, want)
				}
				if want {
					failed++
				}
			}
			if failed < n*share/2 || failed > n*share*3/2 {
				t.Fatalf("attempt %d: %d of %d failed, want about %v", attempt, failed, n, n*share)
			}
		}
		st := sim.Stats()
		if st.Sent+st.Faults != 2*n || st.Calls != 2*n {
			t.Fatalf("stats %+v", st)
		}
		// Not the other methods.
		_, raw := post(t, c, sim, request(t, openapisim.MethodSubscribeQuery, `{"user_id":"`+user(0)+`","template_id_list":["tpl"]}`, testkit.AppKey(), nil))
		if field(t, raw["alipay_open_app_messagetemplate_subscribe_query_response"], "code") != "10000" {
			t.Fatalf("%v", raw)
		}
		sim.SetFailure(openapisim.MethodTemplateMessageSend, 0, openapisim.Fault{})
		for i := range 20 {
			if code, _ := sendTo(t, c, sim, testkit.AppID, user(i), nil); code != "10000" {
				t.Fatalf("failure removed: %s", code)
			}
		}
		if calls := sim.Calls(openapisim.MethodTemplateMessageSend); calls[0].Params != nil || calls[0].Biz != nil || calls[0].AppID != testkit.AppID {
			t.Fatalf("Lean kept %+v", calls[0])
		}
	})
	t.Run("OKDeliver", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, false)
		sim.SetFailure(openapisim.MethodTemplateMessageSend, 1, openapisim.Fault{Code: "20000", SubCode: "isp.unknow-error", Deliver: true})
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(1), nil); code != "20000" {
			t.Fatalf("answer %s", code)
		}
		if got := sim.Sent(); len(got) != 1 || got[0].ToUserID != user(1) {
			t.Fatalf("delivered %+v", got)
		}
		sim.SetFailure(openapisim.MethodTemplateMessageSend, 1, openapisim.Fault{Hang: true, Deliver: true})
		short := &http.Client{Timeout: 300 * time.Millisecond}
		if _, err := short.PostForm(sim.URL(), request(t, openapisim.MethodTemplateMessageSend, sendBiz(user(2)), testkit.AppKey(), nil)); err == nil {
			t.Fatal("Hang answered")
		}
		if got := sim.Sent(); len(got) != 2 || got[1].ToUserID != user(2) || len(sim.SendTimes()) != 2 {
			t.Fatalf("delivered %+v", got)
		}
	})
	t.Run("OKQueuedFirst", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, false)
		sim.SetFailure(openapisim.MethodTemplateMessageSend, 1, openapisim.Fault{Code: "20000"})
		sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "USER_TEMPLATE_ILLEGAL"})
		if _, sub := sendTo(t, c, sim, testkit.AppID, user(1), nil); sub != "USER_TEMPLATE_ILLEGAL" {
			t.Fatalf("sub_code %q", sub)
		}
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(1), nil); code != "20000" {
			t.Fatalf("code %q", code)
		}
	})
	t.Run("ErrBadSignature", func(t *testing.T) {
		// A refused request is no attempt.
		t.Parallel()
		sim := newSim(t, false)
		sim.SetFailure(openapisim.MethodTemplateMessageSend, 1, openapisim.Fault{Code: "20000"})
		_, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, sendBiz(user(1)), testkit.AlipayKey(), nil))
		if field(t, raw["error_response"], "sub_code") != "isv.invalid-signature" || sim.Stats().Faults != 0 || sim.Stats().Calls != 0 {
			t.Fatalf("%v %+v", raw, sim.Stats())
		}
	})
}

func TestChosen(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		n, again := 0, 0
		for i := range 10000 {
			chosen := openapisim.Chosen(user(i), 1, 0.1)
			if chosen {
				n++
			}
			// A lower share chooses a subset; attempts choose afresh.
			if openapisim.Chosen(user(i), 1, 0.05) && !chosen {
				t.Fatal("share 0.05 chose one 0.1 did not")
			}
			if openapisim.Chosen(user(i), 2, 0.1) {
				again++
			}
			if !openapisim.Chosen(user(i), 3, 1) || openapisim.Chosen(user(i), 3, 0) {
				t.Fatal("share 1 or 0 not kept")
			}
		}
		if n < 900 || n > 1100 || again < 900 || again > 1100 {
			t.Fatalf("%d and %d of 10000 at 0.1", n, again)
		}
	})
}

func TestSim_FailUser(t *testing.T) {
	t.Parallel()
	c := &http.Client{Timeout: 5 * time.Second}
	sim := newSim(t, false)
	sim.FailUser(user(1), "40004", "USER_TEMPLATE_ILLEGAL")
	t.Run("OK", func(t *testing.T) {
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(2), nil); code != "10000" {
			t.Fatalf("other user: %s", code)
		}
	})
	t.Run("ErrUser", func(t *testing.T) {
		for range 2 {
			if code, sub := sendTo(t, c, sim, testkit.AppID, user(1), nil); code != "40004" || sub != "USER_TEMPLATE_ILLEGAL" {
				t.Fatalf("answer %s %s", code, sub)
			}
		}
		for _, m := range sim.Sent() {
			if m.ToUserID == user(1) {
				t.Fatal("failed user delivered")
			}
		}
	})
	t.Run("ErrAppAuthTokenFirst", func(t *testing.T) {
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(1), url.Values{"app_auth_token": {"nope"}}); code != "20001" {
			t.Fatalf("answer %s", code)
		}
	})
	t.Run("OKUndone", func(t *testing.T) {
		sim.FailUser(user(1), "", "")
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(1), nil); code != "10000" {
			t.Fatalf("answer %s", code)
		}
	})
}

func TestSim_RequireSubscription(t *testing.T) {
	t.Parallel()
	c := &http.Client{Timeout: 5 * time.Second}
	sim := newSim(t, false)
	sim.RequireSubscription(true)
	sim.Subscribe(user(1), "tpl", openapisim.Subscription{State: "1", Type: "longterm"})
	sim.Subscribe(user(2), "tpl", openapisim.Subscription{State: "0", Type: "onetime"})
	sim.Subscribe(user(3), "other", openapisim.Subscription{State: "1", Type: "longterm"})
	t.Run("OK", func(t *testing.T) {
		for range 2 { // not used up
			if code, _ := sendTo(t, c, sim, testkit.AppID, user(1), nil); code != "10000" {
				t.Fatalf("subscribed: %s", code)
			}
		}
	})
	t.Run("ErrNotSubscribed", func(t *testing.T) {
		for _, u := range []string{user(2), user(3), user(4)} {
			if code, sub := sendTo(t, c, sim, testkit.AppID, u, nil); code != "40004" || sub != openapisim.SubCodeNotSubscribed {
				t.Fatalf("%s: %s %s", u, code, sub)
			}
		}
		if n := len(sim.Sent()); n != 2 {
			t.Fatalf("%d delivered", n)
		}
	})
	t.Run("OKOff", func(t *testing.T) {
		sim.RequireSubscription(false)
		if code, _ := sendTo(t, c, sim, testkit.AppID, user(4), nil); code != "10000" {
			t.Fatalf("answer %s", code)
		}
	})
}

func TestSim_SendTimes(t *testing.T) {
	t.Parallel()
	c := &http.Client{Timeout: 5 * time.Second}
	sim := newSim(t, true)
	start := time.Now()
	for i := range 20 {
		sendTo(t, c, sim, testkit.AppID, user(i), nil)
	}
	end := time.Now()
	times := sim.SendTimes()
	if len(times) != 20 {
		t.Fatalf("%d times", len(times))
	}
	for i, at := range times {
		if at.Before(start) || at.After(end) || (i > 0 && at.Before(times[i-1])) {
			t.Fatalf("time %d: %v (run %v to %v)", i, at, start, end)
		}
	}
}

func TestSim_ServeHTTP(t *testing.T) {
	// New serves from any server; the signature cache keeps each answer
	// signed by the key it asks for.
	t.Parallel()
	sim := openapisim.New(openapisim.Config{Apps: []openapisim.App{{ID: testkit.AppID, Pub: &testkit.AppKey().PublicKey}}, SignKey: testkit.AlipayKey()})
	defer sim.Close()
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c := &http.Client{Timeout: 5 * time.Second}
	rotated := testkit.PKI().Rotated.Key
	for i := range 4 {
		rotate := i%2 == 1
		if rotate {
			sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{SignWith: rotated})
		}
		resp, err := c.PostForm(srv.URL+"/gateway.do", request(t, openapisim.MethodTemplateMessageSend, sendBiz(user(i)), testkit.AppKey(), nil))
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&raw)
		resp.Body.Close()
		if err != nil || field(t, raw[sendKey], "code") != "10000" {
			t.Fatalf("answer %v: %v", raw, err)
		}
		if signedBy(raw, sendKey, &testkit.AlipayKey().PublicKey) == rotate || signedBy(raw, sendKey, &rotated.PublicKey) != rotate {
			t.Fatalf("answer %d signed by the wrong key (rotated: %v)", i, rotate)
		}
	}
	if len(sim.Sent()) != 4 {
		t.Fatalf("%d sent", len(sim.Sent()))
	}
}
