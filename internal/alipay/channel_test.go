package alipay_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const channelContent = `{ "mini_app_id" : "2014072300007148", "note":"a } brace \" and \\ in a string {" }`

const channelData = `{"header":{"appId":"` + testkit.AppID + `","msgApi":"alipay.open.mini.version.audit.passed"},` +
	`"content":` + channelContent + `}`

// channelMessage returns a channel message whose x-sign signs data with k,
// its header and content read as a frame parser reads them.
func channelMessage(t testing.TB, k *rsa.PrivateKey, msgID, signType, data string) alipay.ChannelMessage {
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
	m := alipay.ChannelMessage{MsgID: msgID, Timestamp: "1516797622752", Version: "1.0", Charset: "UTF-8",
		SignType: signType, Sign: base64.StdEncoding.EncodeToString(sig), Data: []byte(data),
		AppID: testkit.AppID, MsgAPI: "alipay.open.mini.version.audit.passed", Content: []byte(channelContent)}
	return m
}

func TestVerifier_VerifyChannelMessage(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	now := time.Unix(1700000000, 0)
	t.Run("OK", func(t *testing.T) {
		n, err := v.VerifyChannelMessage(testkit.AppID, channelMessage(t, testkit.AlipayKey(), "m-1", "RSA2", channelData), now)
		if err != nil {
			t.Fatal(err)
		}
		if n.AppID != testkit.AppID || n.NotifyID != "m-1" || n.Method != "alipay.open.mini.version.audit.passed" ||
			n.UTCTimestamp != 1516797622752 || n.Channel != notify.ChannelWebSocket || n.BizContent != channelContent ||
			n.ContentForm != alipay.ContentFormChannel || !n.ReceivedAt.Equal(now) {
			t.Fatalf("notification = %+v", n)
		}
		if n.Params["biz_content"] != channelContent || n.Params["notify_id"] != "m-1" || n.Params["utc_timestamp"] != "1516797622752" {
			t.Fatalf("params = %v", n.Params)
		}
		if _, ok := n.Params["sign"]; ok {
			t.Fatal("params keep the signature")
		}
		if d := sha256.Sum256([]byte(channelData)); string(n.ContentDigest) != string(d[:]) {
			t.Fatal("the digest is not the signed data's")
		}
	})
	good := func() alipay.ChannelMessage {
		return channelMessage(t, testkit.AlipayKey(), "m-1", "RSA2", channelData)
	}
	with := func(mut func(*alipay.ChannelMessage)) alipay.ChannelMessage {
		m := good()
		mut(&m)
		return m
	}
	otherApp := strings.Replace(channelData, testkit.AppID, "2099999999999999", 1)
	cases := []struct {
		name         string
		app          string
		m            alipay.ChannelMessage
		code, reason string
	}{
		{"ErrOtherKey", testkit.AppID, channelMessage(t, testkit.OtherKey(), "m-1", "RSA2", channelData), notify.EUNVERIFIED, "bad_signature"},
		{"ErrContentChanged", testkit.AppID, with(func(m *alipay.ChannelMessage) {
			m.Data = []byte(strings.Replace(channelData, "2014072300007148", "2014072300007149", 1))
		}), notify.EUNVERIFIED, "bad_signature"},
		{"ErrWhiteSpaceChanged", testkit.AppID, with(func(m *alipay.ChannelMessage) {
			m.Data = []byte(strings.Replace(channelData, `"mini_app_id" : `, `"mini_app_id": `, 1))
		}), notify.EUNVERIFIED, "bad_signature"},
		{"ErrSignMissing", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Sign = "" }), notify.EUNVERIFIED, "missing_sign"},
		{"ErrSignNotBase64", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Sign = "!!" + m.Sign }), notify.EUNVERIFIED, "bad_signature"},
		{"ErrSignTooLong", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Sign = strings.Repeat("A", 2000) }), notify.EUNVERIFIED, "bad_signature"},
		{"ErrRSA1NotAllowed", testkit.AppID, channelMessage(t, testkit.AlipayKey(), "m-1", "RSA", channelData), notify.EUNVERIFIED, "sign_type_refused"},
		{"ErrUnknownSignType", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.SignType = "SM2" }), notify.EUNVERIFIED, "sign_type_refused"},
		{"ErrNoSignType", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.SignType = "" }), notify.EINVALID, "missing_parameter"},
		{"ErrUnknownApp", "2099999999999999", good(), notify.EUNVERIFIED, "unknown_app"},
		{"ErrMessageOfAnotherApp", testkit.AppID, with(func(m *alipay.ChannelMessage) {
			*m = channelMessage(t, testkit.AlipayKey(), "m-1", "RSA2", otherApp)
			m.AppID = "2099999999999999"
		}), notify.EUNVERIFIED, "app_mismatch"},
		{"ErrNoMsgID", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgID = "" }), notify.EINVALID, "missing_parameter"},
		{"ErrMsgIDWithAmp", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgID = "m-1&sign_type=RSA2" }), notify.EINVALID, "bad_parameter"},
		{"ErrMsgIDWithEquals", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgID = "m=1" }), notify.EINVALID, "bad_parameter"},
		{"ErrMsgIDWithQuote", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgID = `m-"1` }), notify.EINVALID, "bad_parameter"},
		{"ErrMsgIDTooLong", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgID = strings.Repeat("m", 65) }), notify.EINVALID, "bad_parameter"},
		{"ErrBadCharset", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Charset = "latin1" }), notify.EINVALID, "bad_charset"},
		{"ErrNoData", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Data = nil }), notify.EINVALID, "missing_parameter"},
		{"ErrNoMsgAPI", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgAPI = "" }), notify.EINVALID, "missing_parameter"},
		{"ErrMsgAPINotAMethod", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.MsgAPI = "x&y=z" }), notify.EINVALID, "bad_parameter"},
		{"ErrTimestampAhead", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Timestamp = fmt.Sprint(time.Now().Add(time.Hour).UnixMilli()) }), notify.ETOOEARLY, "future_timestamp"},
		{"ErrTimestamp2286", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Timestamp = "9999999999999" }), notify.ETOOEARLY, "future_timestamp"},
		{"ErrTimestampNotANumber", testkit.AppID, with(func(m *alipay.ChannelMessage) { m.Timestamp = "15167976&2752" }), notify.EINVALID, "bad_parameter"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := v.VerifyChannelMessage(c.app, c.m, time.Now())
			wantCode(t, err, c.code, c.reason)
			if n != nil {
				t.Fatal("a notification came back with the error")
			}
		})
	}
}

func TestVerifier_VerifyChannelMessage_Variants(t *testing.T) {
	t.Parallel()
	t.Run("RSA1Allowed", func(t *testing.T) {
		v := keyVerifier(t, &alipay.App{ID: testkit.AppID, Keys: []alipay.Key{{Pub: &testkit.AlipayKey().PublicKey}}, AllowRSA1: true})
		if _, err := v.VerifyChannelMessage(testkit.AppID, channelMessage(t, testkit.AlipayKey(), "m-1", "RSA", channelData), time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("CertModeRotatedCert", func(t *testing.T) {
		app := testkit.CertApp()
		app.ID = testkit.AppID // channelData's app
		v := keyVerifier(t, app)
		n, err := v.VerifyChannelMessage(testkit.AppID, channelMessage(t, testkit.PKI().Rotated.Key, "m-1", "RSA2", channelData), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n.CertSN != alipay.CertSN(testkit.PKI().Rotated.Cert) {
			t.Fatalf("cert_sn = %q", n.CertSN)
		}
	})
	t.Run("SecretsRedacted", func(t *testing.T) {
		v := keyVerifier(t)
		content := `{"app_auth_token":"secret-token","auth_app_id":"2013072300101234"}`
		data := `{"header":{"appId":"` + testkit.AppID + `","msgApi":"alipay.open.auth.appauth.cancelled"},"content":` + content + `}`
		m := channelMessage(t, testkit.AlipayKey(), "m-2", "RSA2", data)
		m.MsgAPI, m.Content = "alipay.open.auth.appauth.cancelled", []byte(content)
		n, err := v.VerifyChannelMessage(testkit.AppID, m, time.Now())
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
	t.Run("GBKSigned", func(t *testing.T) {
		v := keyVerifier(t)
		content := `{"app_name":"张三的小程序"}`
		data := `{"header":{"appId":"` + testkit.AppID + `","msgApi":"alipay.open.mini.test"},"content":` + content + `}`
		gbk, err := alipay.ToGBK(data)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(gbk))
		sig, _ := rsa.SignPKCS1v15(nil, testkit.AlipayKey(), crypto.SHA256, d[:])
		m := alipay.ChannelMessage{MsgID: "g", Charset: "GBK", SignType: "RSA2", Sign: base64.StdEncoding.EncodeToString(sig),
			Data: []byte(data), AppID: testkit.AppID, MsgAPI: "alipay.open.mini.test", Content: []byte(content)}
		n, err := v.VerifyChannelMessage(testkit.AppID, m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n.BizContent != content || n.UTCTimestamp != 0 {
			t.Fatalf("notification = %+v", n)
		}
	})
}

func TestVerifier_VerifyText(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	text := []byte(`{"code":"10000","msg":"Success","link_token":"tok-1"}`)
	signOf := func(k *rsa.PrivateKey) string {
		d := sha256.Sum256(text)
		sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(sig)
	}
	t.Run("OK", func(t *testing.T) {
		if err := v.VerifyText(testkit.AppID, text, signOf(testkit.AlipayKey())); err != nil {
			t.Fatal(err)
		}
	})
	for name, err := range map[string]error{
		"ErrOtherKey":    v.VerifyText(testkit.AppID, text, signOf(testkit.OtherKey())),
		"ErrUnsigned":    v.VerifyText(testkit.AppID, text, ""),
		"ErrNotBase64":   v.VerifyText(testkit.AppID, text, "!!"),
		"ErrUnknownApp":  v.VerifyText("2099", text, signOf(testkit.AlipayKey())),
		"ErrTextChanged": v.VerifyText(testkit.AppID, append([]byte(" "), text...), signOf(testkit.AlipayKey())),
	} {
		t.Run(name, func(t *testing.T) {
			if err == nil {
				t.Fatal("verified")
			}
		})
	}
}
