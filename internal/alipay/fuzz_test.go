package alipay_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// signedSamples are the seed's samples signed with testkit.AlipayKey (V1
// and V2), the only messages the fuzzed verifier may accept.
func signedSamples(t testing.TB) []alipay.Form {
	var out []alipay.Form
	for _, s := range samples.All() {
		s.Form["app_id"] = testkit.AppID
		for _, form := range []alipay.ContentForm{alipay.FormV1, alipay.FormV2} {
			out = append(out, testkit.Sign(t, alipay.Form(s.Form), testkit.AlipayKey(), form))
		}
	}
	return out
}

// seedRaw is the raw form of seed 001's first sample, as the article shows
// it ('+' in sign not URL-encoded), JSON compacted.
const seedRaw = `charset=UTF-8&biz_content={"app_auth_token":"211203BB6e8df9252c9e179d9f4c94d57d510X00","app_id":"2014072300007148","auth_app_id":"2013072300101234","user_id":"2088100000034011"}&msg_method=alipay.open.auth.appauth.cancelled&utc_timestamp=1516797622752&version=1.1&sign_type=RSA2&notify_id=d275fec564e62af6bedbcee73f3f05fi5x&app_id=2013121700999429&sign=I+Y/lvqYUEEc10EPdpntRhFIQ==`

func FuzzParseForm(f *testing.F) {
	f.Add([]byte(seedRaw))
	for _, s := range signedSamples(f) {
		f.Add([]byte(s.Encode()))
	}
	f.Add([]byte("a=%zz&&b=;c"))
	f.Fuzz(func(t *testing.T, body []byte) {
		form, err := alipay.ParseForm(body)
		if err != nil {
			return
		}
		for k, v := range form {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				t.Fatalf("NUL passed: %q=%q", k, v)
			}
		}
		again, err := alipay.ParseForm([]byte(form.Encode()))
		if err != nil || len(again) != len(form) {
			t.Fatalf("re-encoded form does not parse back: %v", err)
		}
		for k, v := range form {
			if again[k] != v {
				t.Fatalf("%q: %q != %q", k, again[k], v)
			}
		}
	})
}

func FuzzSignContent(f *testing.F) {
	f.Add("biz_content", `{"a":1}`, "sign", "x")
	f.Add("a", "", "a1", "=&")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		form := alipay.Form{k1: v1, k2: v2, "sign": "s", "sign_type": "RSA2", "alipay_cert_sn": "sn"}
		for _, cf := range []alipay.ContentForm{alipay.FormV1, alipay.FormV2, alipay.FormV1CertSN, alipay.FormV2CertSN} {
			c := alipay.SignContent(form, cf)
			// sign never counts; sign_type and alipay_cert_sn only when kept.
			for name, kept := range map[string]bool{"sign": false, "sign_type": cf.KeepSignType, "alipay_cert_sn": cf.KeepCertSN} {
				other := alipay.Form{}
				for k, v := range form {
					other[k] = v
				}
				other[name] = "changed"
				if changed := !bytes.Equal(c, alipay.SignContent(other, cf)); changed != kept {
					t.Fatalf("%s: changing %s changed the content: %v", cf.Name, name, changed)
				}
			}
		}
	})
}

// FuzzVerify feeds arbitrary bodies to the verifier: it must never panic,
// and what it accepts must be, parameter for parameter in the signed
// content, one of the messages that were signed.
func FuzzVerify(f *testing.F) {
	originals := signedSamples(f)
	for _, s := range originals {
		f.Add([]byte(s.Encode()))
	}
	f.Add([]byte(seedRaw))
	v := keyVerifier(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		form, err := alipay.ParseForm(body)
		if err != nil {
			return
		}
		m, err := v.Verify(form)
		if err != nil {
			return
		}
		got := alipay.SignContent(form, m.Form)
		for _, o := range originals {
			if bytes.Equal(got, alipay.SignContent(o, m.Form)) {
				return
			}
		}
		t.Fatalf("accepted a message that was never signed: %q", got)
	})
}
