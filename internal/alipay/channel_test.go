package alipay_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// channelFrame returns a CONSUME frame whose x-sign signs data with k.
func channelFrame(t testing.TB, k *rsa.PrivateKey, msgID, signType, data string) []byte {
	t.Helper()
	h, d := crypto.SHA256, sha256.Sum256([]byte(data))
	digest := d[:]
	if signType == "RSA" {
		s := sha1.Sum([]byte(data))
		h, digest = crypto.SHA1, s[:]
	}
	sig, err := rsa.SignPKCS1v15(nil, k, h, digest)
	if err != nil {
		t.Fatal(err)
	}
	msg := `{"protocol":{"x-type":"message","x-cmd":"CONSUME","x-msgId":"` + msgID + `","x-timestamp":"1516797622752",` +
		`"x-version":"1.0","x-charset":"UTF-8","x-signType":"` + signType + `","x-sign":"` +
		base64.StdEncoding.EncodeToString(sig) + `"},"data":` + data + `}`
	return alipay.EncodeChannelFrame("s-1", "openchannel", "10.0.0.1", []byte(msg))
}

const channelData = `{"header":{"appId":"` + appID + `","msgApi":"alipay.open.mini.version.audit.passed"},` +
	`"content":{ "mini_app_id" : "2014072300007148", "note":"a } brace \" and \\ in a string {" }}`

func TestChannelMessage(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	now := time.Unix(1700000000, 0)
	n, f, err := v.ChannelMessage(appID, channelFrame(t, keyApp, "m-1", "RSA2", channelData), now)
	if err != nil {
		t.Fatal(err)
	}
	if f.StreamID != "s-1" || f.FromSys != "openchannel" || f.FromSysIP != "10.0.0.1" || string(f.Data) != channelData {
		t.Fatalf("frame = %+v", f)
	}
	wantContent := `{ "mini_app_id" : "2014072300007148", "note":"a } brace \" and \\ in a string {" }`
	if n.AppID != appID || n.NotifyID != "m-1" || n.Method != "alipay.open.mini.version.audit.passed" ||
		n.UTCTimestamp != 1516797622752 || n.Channel != notify.ChannelWebSocket || n.BizContent != wantContent ||
		n.ContentForm != alipay.ContentFormChannel || !n.ReceivedAt.Equal(now) {
		t.Fatalf("notification = %+v", n)
	}
	if n.Params["biz_content"] != wantContent || n.Params["notify_id"] != "m-1" || n.Params["utc_timestamp"] != "1516797622752" {
		t.Fatalf("params = %v", n.Params)
	}
	if _, ok := n.Params["sign"]; ok {
		t.Fatal("params keep the signature")
	}

	ack := string(f.Ack(alipay.AckSuccess))
	want := "from-sys:openchannel\r\nfrom-sys-ip:10.0.0.1\r\nstream-id:s-1\r\n\r\n" +
		`{"protocol":{"x-type":"message","x-cmd":"CONSUME_ACK","x-msgId":"m-1","x-version":"1.0","x-status":"SUCCESS"}}`
	if ack != want {
		t.Fatalf("ack = %q\nwant %q", ack, want)
	}
	back, err := alipay.ParseChannelFrame([]byte(ack))
	if err != nil || back.Cmd != alipay.CmdConsumeAck || back.Status != "SUCCESS" || back.MsgID != "m-1" || back.StreamID != "s-1" {
		t.Fatalf("ack parses to %+v, %v", back, err)
	}
}

func TestChannelMessage_Refused(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	good := channelFrame(t, keyApp, "m-1", "RSA2", channelData)
	replace := func(old, new string) []byte {
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	otherApp := strings.Replace(channelData, appID, "2099999999999999", 1)
	cases := []struct {
		name         string
		app          string
		frame        []byte
		code, reason string
		noFrame      bool
	}{
		{"other key", appID, channelFrame(t, other, "m-1", "RSA2", channelData), notify.EUNVERIFIED, "bad_signature", false},
		{"content changed", appID, replace(`"2014072300007148"`, `"2014072300007149"`), notify.EUNVERIFIED, "bad_signature", false},
		{"white space changed", appID, replace(`"mini_app_id" : `, `"mini_app_id": `), notify.EUNVERIFIED, "bad_signature", false},
		{"sign missing", appID, replace(`"x-sign":"`, `"x-nosign":"`), notify.EUNVERIFIED, "missing_sign", false},
		{"sign not base64", appID, replace(`"x-sign":"`, `"x-sign":"!!`), notify.EUNVERIFIED, "bad_signature", false},
		{"RSA1 not allowed", appID, channelFrame(t, keyApp, "m-1", "RSA", channelData), notify.EUNVERIFIED, "sign_type_refused", false},
		{"unknown sign type", appID, replace(`"x-signType":"RSA2"`, `"x-signType":"SM2"`), notify.EUNVERIFIED, "sign_type_refused", false},
		{"unknown app", "2099999999999999", good, notify.EUNVERIFIED, "unknown_app", false},
		{"message of another app", appID, channelFrame(t, keyApp, "m-1", "RSA2", otherApp), notify.EUNVERIFIED, "app_mismatch", false},
		{"no msgId", appID, replace(`"x-msgId":"m-1"`, `"x-msgId":""`), notify.EINVALID, "missing_parameter", false},
		{"not CONSUME", appID, replace(`"x-cmd":"CONSUME"`, `"x-cmd":"PRODUCE"`), notify.EINVALID, "bad_parameter", false},
		{"bad charset", appID, replace(`"x-charset":"UTF-8"`, `"x-charset":"latin1"`), notify.EINVALID, "bad_charset", false},
		{"no data", appID, replace(`"data":`, `"datum":`), notify.EINVALID, "missing_parameter", false},
		{"data twice", appID, replace(`"data":`, `"data":{"header":{}},"data":`), notify.EINVALID, "malformed_frame", true},
		{"no empty line", appID, bytes.Replace(good, []byte("\r\n\r\n"), []byte("\r\n"), 1), notify.EINVALID, "malformed_frame", true},
		{"not JSON", appID, replace(`}}`, `}`), notify.EINVALID, "malformed_frame", true},
		{"NUL byte", appID, replace(`m-1`, "m-\x001"), notify.EINVALID, "malformed_frame", true},
		{"not UTF-8", appID, replace(`2014072300007148`, "2014\xff"), notify.EINVALID, "malformed_frame", true},
		{"msgId with &", appID, channelFrame(t, keyApp, "m-1&sign_type=RSA2", "RSA2", channelData), notify.EINVALID, "bad_parameter", false},
		{"msgId with =", appID, channelFrame(t, keyApp, "m=1", "RSA2", channelData), notify.EINVALID, "bad_parameter", false},
		{"msgId with a quote", appID, channelFrame(t, keyApp, `m-\"1`, "RSA2", channelData), notify.EINVALID, "bad_parameter", false},
		{"msgId too long", appID, channelFrame(t, keyApp, strings.Repeat("m", 65), "RSA2", channelData), notify.EINVALID, "bad_parameter", false},
		{"msgApi not a method", appID, channelFrame(t, keyApp, "m-1", "RSA2", strings.Replace(channelData, "alipay.open.mini.version.audit.passed", "x&y=z", 1)), notify.EINVALID, "bad_parameter", false},
		{"x-timestamp in the future", appID, replace(`"x-timestamp":"1516797622752"`, `"x-timestamp":"`+fmt.Sprint(time.Now().Add(time.Hour).UnixMilli())+`"`), notify.ETOOEARLY, "future_timestamp", false},
		{"x-timestamp of 2286", appID, replace(`"x-timestamp":"1516797622752"`, `"x-timestamp":"9999999999999"`), notify.ETOOEARLY, "future_timestamp", false},
		{"x-timestamp not a number", appID, replace(`"x-timestamp":"1516797622752"`, `"x-timestamp":"15167976&2752"`), notify.EINVALID, "bad_parameter", false},
		{"content not an object", appID, channelFrame(t, keyApp, "m-1", "RSA2", `{"header":{"appId":"`+appID+`","msgApi":"x"},"content":"abc"}`), notify.EINVALID, "malformed_frame", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, f, err := v.ChannelMessage(c.app, c.frame, time.Now())
			wantCode(t, err, c.code, c.reason)
			if n != nil {
				t.Fatal("a notification came back with the error")
			}
			if (f == nil) != c.noFrame {
				t.Fatalf("frame = %+v; want nil: %v", f, c.noFrame)
			}
		})
	}
}

func TestChannelMessage_Variants(t *testing.T) {
	t.Parallel()
	t.Run("RSA1 allowed", func(t *testing.T) {
		v := keyVerifier(t, &alipay.App{ID: appID, Keys: []alipay.Key{{Pub: &keyApp.PublicKey}}, AllowRSA1: true})
		if _, _, err := v.ChannelMessage(appID, channelFrame(t, keyApp, "m-1", "RSA", channelData), time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cert mode, rotated cert", func(t *testing.T) {
		v := keyVerifier(t, certApp(t, pki.Alipay.PEM, pki.Rotated.PEM))
		n, _, err := v.ChannelMessage(appID, channelFrame(t, pki.Rotated.Key, "m-1", "RSA2", channelData), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n.CertSN != alipay.CertSN(pki.Rotated.Cert) {
			t.Fatalf("cert_sn = %q", n.CertSN)
		}
	})
	t.Run("a data lookalike in the protocol", func(t *testing.T) {
		// A naive search for "data":{ would find the one inside x-error.
		v := keyVerifier(t)
		frame := bytes.Replace(channelFrame(t, keyApp, "m-1", "RSA2", channelData), []byte(`"x-type"`),
			[]byte(`"x-error":"m-\"data\":{\"header\":{}}","x-type"`), 1)
		n, _, err := v.ChannelMessage(appID, frame, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n.NotifyID != "m-1" {
			t.Fatalf("notification = %+v", n)
		}
	})
	t.Run("secrets redacted", func(t *testing.T) {
		v := keyVerifier(t)
		data := `{"header":{"appId":"` + appID + `","msgApi":"alipay.open.auth.appauth.cancelled"},` +
			`"content":{"app_auth_token":"secret-token","auth_app_id":"2013072300101234"}}`
		n, _, err := v.ChannelMessage(appID, channelFrame(t, keyApp, "m-2", "RSA2", data), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(n.BizContent, "secret-token") || strings.Contains(n.Params["biz_content"], "secret-token") {
			t.Fatalf("secret kept: %q", n.BizContent)
		}
		if n.Secrets["app_auth_token"] != "secret-token" {
			t.Fatalf("secrets = %v", n.Secrets)
		}
	})
	t.Run("GBK signed", func(t *testing.T) {
		v := keyVerifier(t)
		data := `{"header":{"appId":"` + appID + `","msgApi":"alipay.open.mini.test"},"content":{"app_name":"张三的小程序"}}`
		gbk, err := alipay.ToGBK(data)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(gbk))
		sig, _ := rsa.SignPKCS1v15(nil, keyApp, crypto.SHA256, d[:])
		msg := `{"protocol":{"x-type":"message","x-cmd":"CONSUME","x-msgId":"g","x-charset":"GBK","x-signType":"RSA2","x-sign":"` +
			base64.StdEncoding.EncodeToString(sig) + `"},"data":` + data + `}`
		n, _, err := v.ChannelMessage(appID, alipay.EncodeChannelFrame("", "", "", []byte(msg)), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n.BizContent != `{"app_name":"张三的小程序"}` || n.UTCTimestamp != 0 {
			t.Fatalf("notification = %+v", n)
		}
	})
}

func TestEncodeChannelFrame_NoHeaders(t *testing.T) {
	t.Parallel()
	if got := string(alipay.EncodeChannelFrame("", "", "", []byte("{}"))); got != "\r\n\r\n{}" {
		t.Fatalf("frame = %q", got)
	}
	f, err := alipay.ParseChannelFrame([]byte("\r\n\r\n{\"protocol\":{\"x-type\":\"message\"}}"))
	if err != nil || f.Type != "message" {
		t.Fatalf("%+v, %v", f, err)
	}
}

func TestChannelRegisterAnswer(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	answer := func(k *rsa.PrivateKey, response string) []byte {
		d := sha256.Sum256([]byte(response))
		sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return []byte(`{"response": ` + response + `, "sign":"` + base64.StdEncoding.EncodeToString(sig) + `"}`)
	}
	ok := `{"code":"10000","msg":"Success","link_token":"tok-1"}`
	tok, err := v.ChannelRegisterAnswer(appID, answer(keyApp, ok))
	if err != nil || tok != "tok-1" {
		t.Fatalf("token %q, %v", tok, err)
	}
	if _, err := v.ChannelRegisterAnswer(appID, answer(other, ok)); err == nil {
		t.Fatal("an answer signed by another key was accepted")
	}
	if _, err := v.ChannelRegisterAnswer(appID, []byte(`{"response":`+ok+`}`)); err == nil {
		t.Fatal("an unsigned answer was accepted")
	}
	_, err = v.ChannelRegisterAnswer(appID, []byte(`{"response":{"code":"40004","msg":"Business Failed","sub_code":"isv.invalid-signature"}}`))
	if err == nil || !strings.Contains(err.Error(), "isv.invalid-signature") {
		t.Fatalf("refusal: %v", err)
	}
	if _, err := v.ChannelRegisterAnswer(appID, []byte(`<html>`)); err == nil {
		t.Fatal("HTML accepted")
	}
}

func TestChannelParams(t *testing.T) {
	t.Parallel()
	p, err := alipay.ChannelParams(map[string]string{"app_id": appID, "charset": "UTF-8", "timestamp": "1", "nonce": "n"}, keyApp)
	if err != nil {
		t.Fatal(err)
	}
	if p["sign_type"] != "RSA2" {
		t.Fatalf("params = %v", p)
	}
	content := "app_id=" + appID + "&charset=UTF-8&nonce=n&sign_type=RSA2&timestamp=1"
	sig, _ := base64.StdEncoding.DecodeString(p["sign"])
	d := sha256.Sum256([]byte(content))
	if err := rsa.VerifyPKCS1v15(&keyApp.PublicKey, crypto.SHA256, d[:], sig); err != nil {
		t.Fatalf("sign does not verify over %q", content)
	}
	if _, err := alipay.ChannelParams(map[string]string{}, nil); err == nil {
		t.Fatal("signed with no key")
	}
}

func TestObjectMembers(t *testing.T) {
	t.Parallel()
	m, err := alipay.ObjectMembers([]byte(` { "a" : {"b":"}"} , "c\u0064":[1,{"x":"]"}], "e":"\\\"" ,"f":-1.5e3,"g":null } `))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": `{"b":"}"}`, "cd": `[1,{"x":"]"}]`, "e": `"\\\""`, "f": `-1.5e3`, "g": `null`}
	if len(m) != len(want) {
		t.Fatalf("members = %q", m)
	}
	for k, v := range want {
		if string(m[k]) != v {
			t.Fatalf("%s = %q; want %q", k, m[k], v)
		}
	}
	for _, bad := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":[}`, `{"a":{]}`, `{"a":"x}`,
		`{"a":1}x`, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`, `{"a":1 "b":2}`, `{"a"::1}`} {
		if _, err := alipay.ObjectMembers([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzObjectMembers checks the span extractor against encoding/json: on any
// valid JSON object without a repeated key, every member's span is the exact
// text encoding/json keeps in a json.RawMessage; on anything else it never
// panics.
func FuzzObjectMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, channelData, `{"a":"}\"{","b":[{"c":"]"}]}`, `{"a":{"b":{"c":[[[]]]}}}`,
		`{"\u0064ata":{}}`, `{"a":"\\"}`, `{"a":true,"b":false,"c":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := alipay.ObjectMembers(b)
		var ref map[string]json.RawMessage
		if !json.Valid(b) || json.Unmarshal(b, &ref) != nil || ref == nil {
			return // only must not panic
		}
		if err != nil {
			if strings.Contains(err.Error(), "twice") {
				return
			}
			t.Fatalf("valid object %q refused: %v", b, err)
		}
		if len(m) != len(ref) {
			t.Fatalf("%q: %d members; encoding/json sees %d", b, len(m), len(ref))
		}
		for k, raw := range ref {
			if !bytes.Equal(m[k], raw) {
				t.Fatalf("%q: member %q = %q; encoding/json %q", b, k, m[k], raw)
			}
		}
	})
}

// FuzzChannelMessage: any frame is parsed without a panic, and a message
// that verifies has data that is a JSON object holding its content.
func FuzzChannelMessage(f *testing.F) {
	f.Add(channelFrame(f, keyApp, "m-1", "RSA2", channelData))
	f.Add([]byte("stream-id:1\r\n\r\n{\"protocol\":{\"x-cmd\":\"CONSUME\"},\"data\":{\"header\":{}}}"))
	f.Add([]byte("\r\n\r\n{\"protocol\":{},\"data\":null}"))
	v := keyVerifier(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, fr, err := v.ChannelMessage(appID, b, time.Now())
		if err == nil {
			if n == nil || fr == nil || !json.Valid(fr.Data) || !bytes.Contains(fr.Data, fr.Content) {
				t.Fatalf("accepted %q as %+v", b, n)
			}
			return
		}
		if c := notify.ErrorCode(err); c != notify.EINVALID && c != notify.EUNVERIFIED {
			t.Fatalf("error %v has code %s", err, c)
		}
	})
}
