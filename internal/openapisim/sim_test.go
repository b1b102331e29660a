package openapisim_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// request returns a signed request for method with biz, signed by key.
func request(t *testing.T, method, biz string, key *rsa.PrivateKey, extra url.Values) url.Values {
	t.Helper()
	p := url.Values{
		"app_id": {testkit.AppID}, "method": {method}, "format": {"JSON"}, "charset": {"utf-8"}, "sign_type": {"RSA2"},
		"timestamp": {time.Now().Format("2006-01-02 15:04:05")}, "version": {"1.0"}, "biz_content": {biz},
	}
	for k, v := range extra {
		p[k] = v
	}
	sig, err := devpki.SignRSA2(key, []byte(openapisim.SignedContent(p)))
	if err != nil {
		t.Fatal(err)
	}
	p.Set("sign", sig)
	return p
}

// post sends p and returns the answer's status and raw fields.
func post(t *testing.T, c *http.Client, sim *openapisim.Sim, p url.Values) (int, map[string]json.RawMessage) {
	t.Helper()
	resp, err := c.PostForm(sim.URL(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var raw map[string]json.RawMessage
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, raw
}

// signedBy reports whether raw's sign is key's over the exact text of
// field.
func signedBy(raw map[string]json.RawMessage, field string, key *rsa.PublicKey) bool {
	var sign string
	if json.Unmarshal(raw["sign"], &sign) != nil {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(sign)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(raw[field])
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) == nil
}

func field(t *testing.T, raw json.RawMessage, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[name].(string)
	return s
}

func TestSim_Serve(t *testing.T) {
	t.Parallel()
	sim := openapisim.Start(openapisim.Config{
		Apps:    []openapisim.App{{ID: testkit.AppID, Pub: &testkit.AppKey().PublicKey}},
		SignKey: testkit.AlipayKey(),
	})
	defer sim.Close()
	c := &http.Client{Timeout: 2 * time.Second}
	send := `{"to_user_id":"2088000000000001","user_template_id":"tpl","page":"pages/index","data":"{\"keyword1\":{\"value\":\"x\"}}"}`
	const key = "alipay_open_app_mini_templatemessage_send_response"

	t.Run("OK", func(t *testing.T) {
		code, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil))
		if code != 200 || field(t, raw[key], "code") != "10000" {
			t.Fatalf("%d %s", code, raw[key])
		}
		if !signedBy(raw, key, &testkit.AlipayKey().PublicKey) {
			t.Fatal("answer not signed by Alipay's key over the response object")
		}
		if got := sim.Sent(); len(got) != 1 || got[0].UserTemplateID != "tpl" || got[0].ToUserID != "2088000000000001" {
			t.Fatalf("sent %+v", got)
		}
	})
	t.Run("ErrSignature", func(t *testing.T) {
		n := len(sim.Sent())
		code, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AlipayKey(), nil))
		if code != 200 || field(t, raw["error_response"], "sub_code") != "isv.invalid-signature" || raw["sign"] != nil {
			t.Fatalf("%d %v", code, raw)
		}
		if len(sim.Sent()) != n {
			t.Fatal("a badly signed request was served")
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		p := request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil)
		p.Set("biz_content", strings.Replace(send, "tpl", "tpl2", 1))
		_, raw := post(t, c, sim, p)
		if field(t, raw["error_response"], "sub_code") != "isv.invalid-signature" {
			t.Fatalf("%v", raw)
		}
	})
	t.Run("ErrAppAuthToken", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), url.Values{"app_auth_token": {"nope"}}))
		if field(t, raw[key], "code") != "20001" || !signedBy(raw, key, &testkit.AlipayKey().PublicKey) {
			t.Fatalf("%v", raw)
		}
	})
	t.Run("BusinessError", func(t *testing.T) {
		sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "USER_TEMPLATE_ILLEGAL", SubMsg: "模板不合法"})
		_, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil))
		if field(t, raw[key], "sub_code") != "USER_TEMPLATE_ILLEGAL" || !signedBy(raw, key, &testkit.AlipayKey().PublicKey) {
			t.Fatalf("%v", raw)
		}
	})
	t.Run("Faults", func(t *testing.T) {
		sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{HTTPStatus: 503})
		if code, _ := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil)); code != 503 {
			t.Fatalf("status %d", code)
		}
		sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{BadSign: true})
		if _, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil)); signedBy(raw, key, &testkit.AlipayKey().PublicKey) {
			t.Fatal("BadSign answer verifies")
		}
		sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{Unsigned: true})
		if _, raw := post(t, c, sim, request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil)); raw["sign"] != nil {
			t.Fatal("Unsigned answer has a sign")
		}
		sim.Fail(openapisim.MethodTemplateMessageSend, openapisim.Fault{Hang: true})
		short := &http.Client{Timeout: 200 * time.Millisecond}
		if _, err := short.PostForm(sim.URL(), request(t, openapisim.MethodTemplateMessageSend, send, testkit.AppKey(), nil)); err == nil {
			t.Fatal("Hang answered")
		}
	})
	t.Run("AuthToken", func(t *testing.T) {
		code := sim.IssueCode(testkit.AppID, "2021000000000100", "2088000000000100")
		_, raw := post(t, c, sim, request(t, openapisim.MethodAuthTokenApp, `{"grant_type":"authorization_code","code":"`+code+`"}`, testkit.AppKey(), nil))
		const tk = "alipay_open_auth_token_app_response"
		var ans struct {
			Code   string `json:"code"`
			Tokens []struct {
				AppAuthToken string `json:"app_auth_token"`
			} `json:"tokens"`
		}
		if err := json.Unmarshal(raw[tk], &ans); err != nil || ans.Code != "10000" || len(ans.Tokens) != 1 {
			t.Fatalf("%s", raw[tk])
		}
		if token, _ := sim.Tokens(testkit.AppID, "2021000000000100"); token != ans.Tokens[0].AppAuthToken {
			t.Fatal("token not live")
		}
		// A code is used once.
		_, raw = post(t, c, sim, request(t, openapisim.MethodAuthTokenApp, `{"grant_type":"authorization_code","code":"`+code+`"}`, testkit.AppKey(), nil))
		if field(t, raw[tk], "sub_code") != "isv.code-invalid" {
			t.Fatalf("%s", raw[tk])
		}
	})
}

func TestSim_CertMode(t *testing.T) {
	t.Parallel()
	sim := openapisim.Start(openapisim.Config{
		Apps:    []openapisim.App{{ID: testkit.AppID, Pub: &testkit.AppKey().PublicKey, AppCertSN: "appsn", RootCertSN: "rootsn"}},
		SignKey: testkit.AlipayKey(), CertSN: "alipaysn",
	})
	defer sim.Close()
	c := &http.Client{Timeout: 2 * time.Second}
	query := `{"user_id":"2088000000000001","template_id_list":["a"]}`
	const key = "alipay_open_app_messagetemplate_subscribe_query_response"
	t.Run("OK", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodSubscribeQuery, query, testkit.AppKey(), url.Values{"app_cert_sn": {"appsn"}, "alipay_root_cert_sn": {"rootsn"}}))
		if field(t, raw[key], "code") != "10000" || string(raw["alipay_cert_sn"]) != `"alipaysn"` || !signedBy(raw, key, &testkit.AlipayKey().PublicKey) {
			t.Fatalf("%v", raw)
		}
	})
	t.Run("ErrCertSN", func(t *testing.T) {
		requests, calls := sim.Requests(), len(sim.Calls(openapisim.MethodSubscribeQuery))
		_, raw := post(t, c, sim, request(t, openapisim.MethodSubscribeQuery, query, testkit.AppKey(), url.Values{"app_cert_sn": {"other"}, "alipay_root_cert_sn": {"rootsn"}}))
		if field(t, raw["error_response"], "sub_code") != "isv.app-cert-sn-mismatch" {
			t.Fatalf("%v", raw)
		}
		// Refused, so not a call; but a request all the same.
		if sim.Requests() != requests+1 || len(sim.Calls(openapisim.MethodSubscribeQuery)) != calls {
			t.Fatalf("requests %d -> %d, calls %d -> %d", requests, sim.Requests(), calls, len(sim.Calls(openapisim.MethodSubscribeQuery)))
		}
	})
}
