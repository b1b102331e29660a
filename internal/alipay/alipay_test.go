package alipay_test

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// baseForm is the form the tests start from: the audit-passed sample for
// testkit.AppID, with a fresh notify_id.
func baseForm(t testing.TB) alipay.Form {
	t.Helper()
	return testkit.Sample(t, "audit-passed", testkit.AppID)
}

// keyVerifier is the Verifier of apps: testkit.KeyApp when none are given.
func keyVerifier(t testing.TB, apps ...*alipay.App) *alipay.Verifier {
	t.Helper()
	if len(apps) == 0 {
		apps = []*alipay.App{testkit.KeyApp()}
	}
	return testkit.Verifier(t, apps...)
}

func wantCode(t *testing.T, err error, code, reason string) {
	t.Helper()
	if notify.ErrorCode(err) != code || notify.ErrorReason(err) != reason {
		t.Fatalf("err = %v; want code %s reason %s", err, code, reason)
	}
}

func TestSignContent(t *testing.T) {
	t.Parallel()
	f := alipay.Form{"b": "2", "a": "1", "sign": "x", "sign_type": "RSA2", "alipay_cert_sn": "sn", "empty": "", "a1": "3"}
	t.Run("V1", func(t *testing.T) {
		// Sorted by key, not by "key=value": "a" comes before "a1" although
		// "a=" sorts after "a1=" (smartwalle/alipay gets this wrong).
		if got := string(alipay.SignContent(f, alipay.FormV1)); got != "a=1&a1=3&b=2&empty=" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("V2", func(t *testing.T) {
		if got := string(alipay.SignContent(f, alipay.FormV2)); got != "a=1&a1=3&b=2&empty=&sign_type=RSA2" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("CertSN", func(t *testing.T) {
		if got := string(alipay.SignContent(f, alipay.FormV1CertSN)); got != "a=1&a1=3&alipay_cert_sn=sn&b=2&empty=" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("ValuesUntouched", func(t *testing.T) {
		g := alipay.Form{"k": " spaced %41 "}
		if got := string(alipay.SignContent(g, alipay.FormV1)); got != "k= spaced %41 " {
			t.Fatalf("got %q", got)
		}
	})
}

func TestParseForm(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		f, err := alipay.ParseForm([]byte("a=1&b=%E4%BD%A0&c="))
		if err != nil || f["a"] != "1" || f["b"] != "你" || f["c"] != "" || len(f) != 3 {
			t.Fatalf("f=%v err=%v", f, err)
		}
	})
	for name, body := range map[string]string{
		"ErrEmpty":     "",
		"ErrDuplicate": "a=1&a=2",
		"ErrEscape":    "a=%zz",
		"ErrNUL":       "a=%00",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := alipay.ParseForm([]byte(body)); notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestVerifier_Verify(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	t.Run("OK", func(t *testing.T) {
		m, err := v.Verify(testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1))
		if err != nil || m.Form != alipay.FormV1 {
			t.Fatalf("m=%v err=%v", m, err)
		}
	})
	t.Run("V2", func(t *testing.T) {
		m, err := v.Verify(testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV2))
		if err != nil || m.Form != alipay.FormV2 {
			t.Fatalf("m=%v err=%v", m, err)
		}
	})
	t.Run("EmptyExtraParameter", func(t *testing.T) {
		f := baseForm(t)
		f["extra"] = ""
		if _, err := v.Verify(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("KeyAndKeyPlusChar", func(t *testing.T) {
		f := baseForm(t)
		f["a"], f["a1"] = "x", "y"
		if _, err := v.Verify(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PlusAsSpace", func(t *testing.T) {
		// Find a signature holding '+', then send it with spaces.
		for i := 0; i < 64; i++ {
			f := baseForm(t)
			f["notify_id"] = "plus-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
			s := testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1)
			if !strings.Contains(s["sign"], "+") {
				continue
			}
			s["sign"] = strings.ReplaceAll(s["sign"], "+", " ")
			if _, err := v.Verify(s); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatal("no signature with '+' found")
	})
	t.Run("RSA1Allowed", func(t *testing.T) {
		v := keyVerifier(t, &alipay.App{ID: testkit.AppID, Keys: []alipay.Key{{Pub: &testkit.AlipayKey().PublicKey}}, AllowRSA1: true})
		f := baseForm(t)
		f["sign_type"] = "RSA"
		if _, err := v.Verify(testkit.SignSHA1(t, f, testkit.AlipayKey(), alipay.FormV1)); err != nil {
			t.Fatal(err)
		}
	})
	tampered := func(mut func(alipay.Form)) alipay.Form {
		s := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1)
		mut(s)
		return s
	}
	for name, tc := range map[string]struct {
		form         alipay.Form
		code, reason string
	}{
		"ErrTamperedBiz":     {tampered(func(f alipay.Form) { f["biz_content"] = `{"mini_app_id":"2014072300007149"}` }), notify.EUNVERIFIED, "bad_signature"},
		"ErrTamperedTime":    {tampered(func(f alipay.Form) { f["utc_timestamp"] = "1516797622753" }), notify.EUNVERIFIED, "bad_signature"},
		"ErrAddedParameter":  {tampered(func(f alipay.Form) { f["x"] = "1" }), notify.EUNVERIFIED, "bad_signature"},
		"ErrAddedEmpty":      {tampered(func(f alipay.Form) { f["x"] = "" }), notify.EUNVERIFIED, "bad_signature"},
		"ErrNoSign":          {tampered(func(f alipay.Form) { delete(f, "sign") }), notify.EUNVERIFIED, "missing_sign"},
		"ErrGarbageSign":     {tampered(func(f alipay.Form) { f["sign"] = "not*base64" }), notify.EUNVERIFIED, "bad_signature"},
		"ErrShortSign":       {tampered(func(f alipay.Form) { f["sign"] = base64.StdEncoding.EncodeToString([]byte("short")) }), notify.EUNVERIFIED, "bad_signature"},
		"ErrOtherKey":        {testkit.Sign(t, baseForm(t), testkit.OtherKey(), alipay.FormV1), notify.EUNVERIFIED, "bad_signature"},
		"ErrUnknownApp":      {tampered(func(f alipay.Form) { f["app_id"] = "2099" }), notify.EUNVERIFIED, "unknown_app"},
		"ErrNoApp":           {tampered(func(f alipay.Form) { delete(f, "app_id") }), notify.EINVALID, "missing_parameter"},
		"ErrSHA1NotAllowed":  {tampered(func(f alipay.Form) { f["sign_type"] = "RSA" }), notify.EUNVERIFIED, "sign_type_refused"},
		"ErrUnknownSignType": {tampered(func(f alipay.Form) { f["sign_type"] = "SM2" }), notify.EUNVERIFIED, "sign_type_refused"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(tc.form)
			wantCode(t, err, tc.code, tc.reason)
		})
	}
	t.Run("ErrSHA1SignatureAsRSA2", func(t *testing.T) {
		_, err := v.Verify(testkit.SignSHA1(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1))
		wantCode(t, err, notify.EUNVERIFIED, "bad_signature")
	})
}

func TestVerifier_CertMode(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t, testkit.CertApp())
	certForm := func() alipay.Form { return testkit.Sample(t, "audit-passed", testkit.CertAppID) }
	withSN := func(c devpki.Cert, form alipay.ContentForm) alipay.Form {
		f := certForm()
		f["alipay_cert_sn"] = alipay.CertSN(c.Cert)
		return testkit.Sign(t, f, c.Key, form)
	}
	t.Run("OK", func(t *testing.T) {
		for _, form := range []alipay.ContentForm{alipay.FormV1, alipay.FormV2, alipay.FormV1CertSN, alipay.FormV2CertSN} {
			m, err := v.Verify(withSN(testkit.PKI().Alipay, form))
			if err != nil || m.Form != form || m.CertSN != alipay.CertSN(testkit.PKI().Alipay.Cert) {
				t.Fatalf("%s: m=%+v err=%v", form.Name, m, err)
			}
		}
	})
	t.Run("Rotated", func(t *testing.T) {
		if _, err := v.Verify(withSN(testkit.PKI().Rotated, alipay.FormV1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NoSNTriesEveryCert", func(t *testing.T) {
		if _, err := v.Verify(testkit.Sign(t, certForm(), testkit.PKI().Rotated.Key, alipay.FormV1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrUnknownSN", func(t *testing.T) {
		_, err := v.Verify(withSN(testkit.PKI().Rogue, alipay.FormV1))
		wantCode(t, err, notify.EUNVERIFIED, "unknown_cert_sn")
	})
	t.Run("ErrSNOfOtherCert", func(t *testing.T) {
		f := certForm()
		f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Alipay.Cert)
		_, err := v.Verify(testkit.Sign(t, f, testkit.PKI().Rotated.Key, alipay.FormV1))
		wantCode(t, err, notify.EUNVERIFIED, "bad_signature")
	})
}

func TestParseAlipayCert(t *testing.T) {
	t.Parallel()
	roots, err := alipay.ParseRootBundle(testkit.PKI().RootBundlePEM)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		c, err := alipay.ParseAlipayCert(testkit.PKI().Alipay.PEM, roots, time.Now())
		if err != nil || c.SN != alipay.CertSN(testkit.PKI().Alipay.Cert) {
			t.Fatalf("c=%v err=%v", c, err)
		}
	})
	for name, pem := range map[string][]byte{"ErrRogue": testkit.PKI().Rogue.PEM, "ErrExpired": testkit.PKI().Expired.PEM, "ErrGarbage": []byte("nope")} {
		t.Run(name, func(t *testing.T) {
			if _, err := alipay.ParseAlipayCert(pem, roots, time.Now()); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("ErrLeafAlone", func(t *testing.T) {
		// Without its intermediate, the Alipay cert does not chain.
		block := testkit.PKI().Alipay.PEM[:strings.Index(string(testkit.PKI().Alipay.PEM), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----")]
		if _, err := alipay.ParseAlipayCert(block, roots, time.Now()); err == nil {
			t.Fatal("accepted")
		}
	})
}

func TestParseRootBundle(t *testing.T) {
	t.Parallel()
	t.Run("Production", func(t *testing.T) {
		// Alipay's production root bundle (with an SM2 root Go cannot parse)
		// has a well-known root SN that every SDK sends as alipay_root_cert_sn.
		data, err := os.ReadFile("testdata/alipayRootCert.prod.crt")
		if err != nil {
			t.Fatal(err)
		}
		b, err := alipay.ParseRootBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		if want := "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"; b.SN != want {
			t.Fatalf("SN = %s, want %s", b.SN, want)
		}
	})
	t.Run("Test", func(t *testing.T) {
		b, err := alipay.ParseRootBundle(testkit.PKI().RootBundlePEM)
		if err != nil {
			t.Fatal(err)
		}
		want := alipay.CertSN(testkit.PKI().Root) + "_" + alipay.CertSN(testkit.PKI().SHA1Root)
		if b.SN != want || len(b.Certs) != 3 {
			t.Fatalf("SN = %s, want %s (%d certs)", b.SN, want, len(b.Certs))
		}
	})
	t.Run("ErrEmpty", func(t *testing.T) {
		if _, err := alipay.ParseRootBundle(nil); err == nil {
			t.Fatal("accepted")
		}
	})
}

func TestParsePublicKey(t *testing.T) {
	t.Parallel()
	b64, _ := devpki.PublicKeyBase64(&testkit.AlipayKey().PublicKey)
	pemKey, _ := devpki.PublicKeyPEM(&testkit.AlipayKey().PublicKey)
	wrapped := b64[:64] + "\n" + b64[64:128] + "\r\n" + b64[128:] + "\n"
	for name, in := range map[string]string{"Base64": b64, "PEM": string(pemKey), "Wrapped": wrapped} {
		t.Run(name, func(t *testing.T) {
			k, err := alipay.ParsePublicKey([]byte(in))
			if err != nil || !k.Equal(&testkit.AlipayKey().PublicKey) {
				t.Fatalf("k=%v err=%v", k, err)
			}
		})
	}
	p8, _ := devpki.PrivateKeyPKCS8Base64(testkit.AlipayKey())
	for name, in := range map[string]string{
		"ErrPrivateKey":  p8,
		"ErrPrivatePEM":  string(devpki.PrivateKeyPKCS1PEM(testkit.AlipayKey())),
		"ErrCertificate": string(testkit.PKI().Alipay.PEM),
		"ErrGarbage":     "hello",
		"ErrEmpty":       "",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := alipay.ParsePublicKey([]byte(in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestVerifier_Notification(t *testing.T) {
	t.Parallel()
	aesKey := []byte("0123456789abcdef")
	v := keyVerifier(t, &alipay.App{ID: testkit.AppID, Keys: []alipay.Key{{Pub: &testkit.AlipayKey().PublicKey}}, EncryptKey: aesKey},
		&alipay.App{ID: "2099", Keys: []alipay.Key{{Pub: &testkit.AlipayKey().PublicKey}}})
	body := func(f alipay.Form) []byte {
		return []byte(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1).Encode())
	}
	t.Run("OK", func(t *testing.T) {
		f := baseForm(t)
		n, m, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		if err != nil || m.Form != alipay.FormV1 {
			t.Fatal(err)
		}
		if n.AppID != testkit.AppID || n.NotifyID != f["notify_id"] || n.Method != "alipay.open.mini.version.audit.passed" ||
			n.UTCTimestamp != 1516797622752 || n.BizContent != `{"mini_app_id":"2014072300007148"}` || n.Failure != "" {
			t.Fatalf("%+v", n)
		}
	})
	t.Run("GBK", func(t *testing.T) {
		f := baseForm(t)
		f["charset"] = "GBK"
		biz, err := alipay.ToGBK(`{"mini_app_id":"1","app_name":"张三的试用小程序"}`)
		if err != nil {
			t.Fatal(err)
		}
		f["biz_content"] = biz
		n, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n.BizContent != `{"mini_app_id":"1","app_name":"张三的试用小程序"}` || n.Params["biz_content"] != n.BizContent {
			t.Fatalf("biz = %q", n.BizContent)
		}
	})
	t.Run("ErrGBKVerifiedAsUTF8", func(t *testing.T) {
		// Signed over the GBK bytes, then sent as the same text in UTF-8:
		// the signature covers the bytes received, so it is refused.
		f := baseForm(t)
		f["charset"] = "GBK"
		gbk, _ := alipay.ToGBK(`{"app_name":"张三"}`)
		f["biz_content"] = gbk
		s := testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1)
		s["biz_content"] = `{"app_name":"张三"}`
		_, _, err := v.Notification([]byte(s.Encode()), notify.ChannelHTTP, time.Now())
		wantCode(t, err, notify.EUNVERIFIED, "bad_signature")
	})
	t.Run("AES", func(t *testing.T) {
		f := baseForm(t)
		f["encrypt_type"] = "AES"
		ct, err := alipay.EncryptBiz(aesKey, `{"mini_app_id":"42"}`)
		if err != nil {
			t.Fatal(err)
		}
		f["biz_content"] = ct
		n, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		if err != nil || n.BizContent != `{"mini_app_id":"42"}` || !n.Encrypted || n.Failure != "" || n.Params["biz_content"] != ct {
			t.Fatalf("n=%+v err=%v", n, err)
		}
	})
	t.Run("AESNoKeyKeptAsFailed", func(t *testing.T) {
		f := baseForm(t)
		f["app_id"] = "2099"
		f["encrypt_type"] = "AES"
		ct, _ := alipay.EncryptBiz(aesKey, `{"mini_app_id":"42"}`)
		f["biz_content"] = ct
		n, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		if err != nil || n.Failure == "" || n.BizContent != ct {
			t.Fatalf("n=%+v err=%v", n, err)
		}
	})
	t.Run("SecretsRedacted", func(t *testing.T) {
		f := baseForm(t)
		f["biz_content"] = `{"app_auth_token":"tok","auth_app_id":"1"}`
		n, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(n.BizContent, "tok\"") || strings.Contains(n.Params["biz_content"], "tok\"") || n.Secrets["app_auth_token"] != "tok" {
			t.Fatalf("%+v", n)
		}
	})
	t.Run("OlderStyle", func(t *testing.T) {
		f := alipay.Form{"notify_id": "g-1", "notify_type": "open_app_auth_notify", "notify_time": "2018-01-24 20:40:22",
			"app_id": testkit.AppID, "sign_type": "RSA2", "biz_content": `{}`, "charset": "utf-8"}
		n, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		if err != nil || n.Method != "open_app_auth_notify" || n.UTCTimestamp != 1516797622000 {
			t.Fatalf("n=%+v err=%v", n, err)
		}
	})
	for name, mut := range map[string]func(alipay.Form){
		"ErrNoNotifyID":   func(f alipay.Form) { delete(f, "notify_id") },
		"ErrNoMethod":     func(f alipay.Form) { delete(f, "msg_method") },
		"ErrBadTimestamp": func(f alipay.Form) { f["utc_timestamp"] = "yesterday" },
		"ErrBadCharset":   func(f alipay.Form) { f["charset"] = "latin1" },
		"ErrBadUTF8":      func(f alipay.Form) { f["biz_content"] = "\xff" },
	} {
		t.Run(name, func(t *testing.T) {
			f := baseForm(t)
			mut(f)
			_, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
			if notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
