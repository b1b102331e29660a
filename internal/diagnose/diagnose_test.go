package diagnose_test

import (
	"crypto/rsa"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// Diagnose fixtures: testkit's PKI, and forms for its app (CertAppID). In
// public-key mode the PKI's Alipay cert's key plays Alipay's public key, its
// App key the app's, and Rotated's key a stranger.

// dgForm is the audit-passed sample for testkit.CertAppID, with a fresh
// notify_id.
func dgForm(t *testing.T) alipay.Form {
	t.Helper()
	return testkit.Sample(t, "audit-passed", testkit.CertAppID)
}

func dgPub(t *testing.T, k *rsa.PrivateKey) []byte {
	t.Helper()
	b64, err := devpki.PublicKeyBase64(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(b64)
}

// keyMode is the configuration of public-key mode with Alipay's key.
func keyMode(t *testing.T) diagnose.DiagnoseInput {
	return diagnose.DiagnoseInput{PublicKeys: []diagnose.Source{{Name: "ALIPAY_PUBLIC_KEY", Data: dgPub(t, testkit.PKI().Alipay.Key)}}}
}

// certMode is the configuration of certificate mode with the given certs.
func certMode(certs ...devpki.Cert) diagnose.DiagnoseInput {
	in := diagnose.DiagnoseInput{RootCert: &diagnose.Source{Name: devpki.RootCertFile, Data: testkit.PKI().RootBundlePEM}}
	for _, c := range certs {
		in.Certs = append(in.Certs, diagnose.Source{Name: "cert-" + alipay.CertSN(c.Cert) + ".crt", Data: c.PEM})
	}
	return in
}

// check asserts the verdict and that every code is among the findings.
func check(t *testing.T, r diagnose.Report, verified bool, codes ...string) {
	t.Helper()
	if r.Verified != verified {
		t.Errorf("Verified = %v, want %v (reason %q)", r.Verified, verified, r.Reason)
	}
	for _, c := range codes {
		if !r.Has(c) {
			t.Errorf("no finding %s", c)
		}
	}
	if t.Failed() {
		for _, f := range r.Findings {
			t.Logf("  %s %s: %s", f.Level, f.Code, f.Text)
		}
		for _, a := range r.Attempts {
			t.Logf("  attempt %s %q %s %s ok=%v", a.Form, a.Variant, a.Hash, a.Key, a.OK)
		}
	}
}

func text(t *testing.T, r diagnose.Report, code string) string {
	t.Helper()
	f, ok := r.Finding(code)
	if !ok {
		t.Fatalf("no finding %s", code)
	}
	return f.Text
}

func noErrors(t *testing.T, r diagnose.Report) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Level == diagnose.LevelError {
			t.Errorf("unexpected error finding %s: %s", f.Code, f.Text)
		}
	}
}

// signWithPlus signs f (V1) with k, changing notify_id until sign holds a '+'.
func signWithPlus(t *testing.T, f alipay.Form, k *rsa.PrivateKey) alipay.Form {
	t.Helper()
	for i := 0; i < 200; i++ {
		f["notify_id"] = "dg-plus-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		s := testkit.Sign(t, f, k, alipay.FormV1)
		if strings.Contains(s["sign"], "+") {
			return s
		}
	}
	t.Fatal("no signature with a '+' in 200 tries")
	return nil
}

// rawBody encodes f, but sign as it is (not URL-encoded), as a careless
// sender does.
func rawBody(f alipay.Form) string {
	g := alipay.Form{}
	for k, v := range f {
		if k != "sign" {
			g[k] = v
		}
	}
	return g.Encode() + "&sign=" + f["sign"]
}

// decodedBody renders f as a log prints decoded parameters: k=v&... with
// nothing encoded.
func decodedBody(f alipay.Form) string {
	var keys []string
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+f[k])
	}
	return strings.Join(parts, "&")
}

func TestDiagnose(t *testing.T) {
	t.Parallel()
	alipayKey, stranger, appKey := testkit.PKI().Alipay.Key, testkit.PKI().Rotated.Key, testkit.PKI().App.Key

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()+"\n"), keyMode(t))
		check(t, r, true, diagnose.DiagContentForm)
		noErrors(t, r)
		if r.Form != "v1" || r.Key != "ALIPAY_PUBLIC_KEY" || r.AppID != testkit.CertAppID || r.NotifyID != f["notify_id"] {
			t.Errorf("report = %+v", r)
		}
		if !strings.Contains(text(t, r, diagnose.DiagContentForm), "sign_type left out") {
			t.Error(text(t, r, diagnose.DiagContentForm))
		}
	})

	t.Run("SignTypeKept", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV2)
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, true, diagnose.DiagContentForm)
		if r.Form != "v2" || !strings.Contains(text(t, r, diagnose.DiagContentForm), "sign_type kept") {
			t.Errorf("form %s: %s", r.Form, text(t, r, diagnose.DiagContentForm))
		}
		// Both forms were tried, V1 first.
		if len(r.Attempts) < 2 || r.Attempts[0].Form != "v1" || r.Attempts[0].OK || !r.Attempts[1].OK {
			t.Errorf("attempts = %+v", r.Attempts)
		}
	})

	t.Run("WrongKey", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), stranger, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagWrongKey, diagnose.DiagGatewayRefuses)
		if r.Reason != "bad_signature" {
			t.Errorf("reason = %s", r.Reason)
		}
		if s := text(t, r, diagnose.DiagWrongKey); !strings.Contains(s, "应用公钥") || !strings.Contains(s, "支付宝公钥") {
			t.Error(s)
		}
		// V1 and V2, SHA256 and SHA1.
		hashes := map[string]bool{}
		for _, a := range r.Attempts {
			hashes[a.Form+"/"+a.Hash] = true
		}
		for _, want := range []string{"v1/SHA256", "v2/SHA256", "v1/SHA1", "v2/SHA1"} {
			if !hashes[want] {
				t.Errorf("no attempt %s in %v", want, hashes)
			}
		}
	})

	t.Run("Altered", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		f["biz_content"] = `{"mini_app_id":"2014072300009999"}`
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagWrongKey)
	})

	t.Run("PrivateKeyPasted", func(t *testing.T) {
		t.Parallel()
		pem, err := devpki.PrivateKeyPKCS8PEM(appKey)
		if err != nil {
			t.Fatal(err)
		}
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := diagnose.DiagnoseInput{PublicKeys: []diagnose.Source{{Name: "ALIPAY_PUBLIC_KEY", Data: pem}}}
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagKeyIsPrivate, diagnose.DiagNoKeys, diagnose.DiagWrongKey)
		// Bare base64 PKCS#1, as the key tool writes it.
		in.PublicKeys[0].Data = []byte(devpki.PrivateKeyPKCS1Base64(appKey))
		check(t, diagnose.Diagnose([]byte(f.Encode()), in), false, diagnose.DiagKeyIsPrivate)
	})

	t.Run("SignersPrivateKeyPasted", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := diagnose.DiagnoseInput{PublicKeys: []diagnose.Source{{Name: "key.pem", Data: devpki.PrivateKeyPKCS1PEM(alipayKey)}}}
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagKeyIsPrivate, diagnose.DiagPrivateHalfVerifies)
	})

	t.Run("CertPastedAsKey", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := diagnose.DiagnoseInput{PublicKeys: []diagnose.Source{{Name: "ALIPAY_PUBLIC_KEY_FILE alipayCertPublicKey_RSA2.crt", Data: testkit.PKI().Alipay.PEM}}}
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagKeyIsCert, diagnose.DiagPastedCertVerifies)
		if !strings.Contains(text(t, r, diagnose.DiagKeyIsCert), "ALIPAY_ROOT_CERT_FILE") {
			t.Error(text(t, r, diagnose.DiagKeyIsCert))
		}
	})

	t.Run("AppKeyConfiguredAsAlipays", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := diagnose.DiagnoseInput{
			PublicKeys:    []diagnose.Source{{Name: "ALIPAY_PUBLIC_KEY", Data: dgPub(t, appKey)}},
			AppPublicKeys: []diagnose.Source{{Name: "app_public_key.txt", Data: dgPub(t, appKey)}},
		}
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagKeyIsAppKey, diagnose.DiagWrongKey)
		if s := text(t, r, diagnose.DiagKeyIsAppKey); !strings.Contains(s, "应用公钥") || !strings.Contains(s, "ALIPAY_PUBLIC_KEY") {
			t.Error(s)
		}
	})

	t.Run("SignedWithAppKey", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), appKey, alipay.FormV1)
		in := keyMode(t)
		in.AppPublicKeys = []diagnose.Source{{Name: devpki.AppCertFile(testkit.CertAppID), Data: testkit.PKI().App.PEM}}
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagSignedWithAppKey)
		if r.Has(diagnose.DiagWrongKey) {
			t.Error("wrong_key reported although the app key explains it")
		}
	})

	t.Run("PlusAsSpace", func(t *testing.T) {
		t.Parallel()
		f := signWithPlus(t, dgForm(t), alipayKey)
		r := diagnose.Diagnose([]byte(rawBody(f)), keyMode(t))
		check(t, r, true, diagnose.DiagSignSpacesRepaired)
		if s := text(t, r, diagnose.DiagSignSpacesRepaired); !strings.Contains(s, "then verified") {
			t.Error(s)
		}
		// Repaired but still wrong: said so.
		g := signWithPlus(t, dgForm(t), stranger)
		r = diagnose.Diagnose([]byte(rawBody(g)), keyMode(t))
		check(t, r, false, diagnose.DiagSignSpacesRepaired, diagnose.DiagWrongKey)
		if s := text(t, r, diagnose.DiagSignSpacesRepaired); !strings.Contains(s, "still did not verify") {
			t.Error(s)
		}
	})

	t.Run("PlusDropped", func(t *testing.T) {
		t.Parallel()
		f := signWithPlus(t, dgForm(t), alipayKey)
		f["sign"] = strings.Replace(f["sign"], "+", "", 1)
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagSignNotBase64)
		if s := text(t, r, diagnose.DiagSignNotBase64); !strings.Contains(s, "not a multiple of 4") {
			t.Error(s)
		}
	})

	t.Run("SignTruncated", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		f["sign"] = f["sign"][:100] + f["sign"][104:]
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagSignWrongLength)
		if s := text(t, r, diagnose.DiagSignWrongLength); !strings.Contains(s, "253 bytes") || !strings.Contains(s, "256 bytes") {
			t.Error(s)
		}
	})

	t.Run("SignURLSafe", func(t *testing.T) {
		t.Parallel()
		f := signWithPlus(t, dgForm(t), alipayKey)
		f["sign"] = strings.NewReplacer("+", "-", "/", "_").Replace(f["sign"])
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagSignNotBase64, diagnose.DiagSignURLSafe)
	})

	t.Run("EmptyValuesDropped", func(t *testing.T) {
		t.Parallel()
		// The sender signs without the empty parameters, then sends them.
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		f["min_app_id"] = ""
		f["encrypt_type"] = ""
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagEmptyValuesDropped)
		if s := text(t, r, diagnose.DiagEmptyValuesDropped); !strings.Contains(s, "encrypt_type, min_app_id") || !strings.Contains(s, "gopay") {
			t.Error(s)
		}
		if r.Has(diagnose.DiagWrongKey) {
			t.Error("wrong_key reported although empty values explain it")
		}
		// Signed with them (as Alipay does): verifies.
		g := dgForm(t)
		g["min_app_id"] = ""
		g = testkit.Sign(t, g, alipayKey, alipay.FormV1)
		check(t, diagnose.Diagnose([]byte(g.Encode()), keyMode(t)), true)
	})

	t.Run("ValuesTrimmed", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		f["version"] = "1.1 "
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagValuesTrimmed)
	})

	t.Run("SHA1Refused", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["sign_type"] = "RSA"
		f = testkit.SignSHA1(t, f, alipayKey, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagSHA1Refused)
		if r.Reason != "sign_type_refused" {
			t.Errorf("reason = %s", r.Reason)
		}
		in := keyMode(t)
		in.AllowRSA1 = true
		r = diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, true, diagnose.DiagSHA1Allowed)
	})

	t.Run("SHA1DeclaredRSA2", func(t *testing.T) {
		t.Parallel()
		f := testkit.SignSHA1(t, dgForm(t), alipayKey, alipay.FormV2)
		in := keyMode(t)
		in.AllowRSA1 = true
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagSHA1DeclaredRSA2)
		if r.Reason != "bad_signature" {
			t.Errorf("reason = %s", r.Reason)
		}
	})

	t.Run("SHA256DeclaredRSA", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["sign_type"] = "RSA"
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		check(t, diagnose.Diagnose([]byte(f.Encode()), keyMode(t)), false, diagnose.DiagSHA256DeclaredRSA)
	})

	t.Run("SignTypeUnsupported", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["sign_type"] = "rsa2"
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagSignTypeUnsupported)
	})

	t.Run("CertMode", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Alipay.Cert)
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()), certMode(testkit.PKI().Alipay))
		check(t, r, true)
		noErrors(t, r)
		if r.CertSN != alipay.CertSN(testkit.PKI().Alipay.Cert) || !strings.Contains(r.Key, r.CertSN) {
			t.Errorf("cert sn %s key %s", r.CertSN, r.Key)
		}
	})

	t.Run("CertRotation", func(t *testing.T) {
		t.Parallel()
		sn := alipay.CertSN(testkit.PKI().Rotated.Cert)
		f := dgForm(t)
		f["alipay_cert_sn"] = sn
		f = testkit.Sign(t, f, testkit.PKI().Rotated.Key, alipay.FormV2CertSN)
		r := diagnose.Diagnose([]byte(f.Encode()), certMode(testkit.PKI().Alipay, testkit.PKI().Rotated))
		check(t, r, true)
		if r.CertSN != sn || r.Form != "v2+cert_sn" {
			t.Errorf("cert sn %s form %s", r.CertSN, r.Form)
		}
		// Every cert against every form.
		seen := map[string]bool{}
		for _, a := range r.Attempts {
			seen[a.Form+" "+a.Key] = true
		}
		if len(seen) != 8 {
			t.Errorf("%d distinct attempts, want 2 certs x 4 forms: %v", len(seen), seen)
		}
	})

	t.Run("UnknownCertSN", func(t *testing.T) {
		t.Parallel()
		// Signed by the rotated cert, only the old one configured.
		f := dgForm(t)
		f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Rotated.Cert)
		f = testkit.Sign(t, f, testkit.PKI().Rotated.Key, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()), certMode(testkit.PKI().Alipay))
		check(t, r, false, diagnose.DiagUnknownCertSN, diagnose.DiagWrongKey)
		if r.Reason != "unknown_cert_sn" {
			t.Errorf("reason = %s", r.Reason)
		}
		if s := text(t, r, diagnose.DiagUnknownCertSN); !strings.Contains(s, alipay.CertSN(testkit.PKI().Alipay.Cert)) || !strings.Contains(s, "rotation") {
			t.Error(s)
		}
	})

	t.Run("CertSNOfAnotherCert", func(t *testing.T) {
		t.Parallel()
		// Signed by the configured cert, but naming another SN.
		f := dgForm(t)
		f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Rotated.Cert)
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		r := diagnose.Diagnose([]byte(f.Encode()), certMode(testkit.PKI().Alipay))
		check(t, r, false, diagnose.DiagUnknownCertSN)
		if s := text(t, r, diagnose.DiagUnknownCertSN); !strings.Contains(s, "yet") {
			t.Error(s)
		}
	})

	t.Run("CertExpired", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Expired.Cert)
		f = testkit.Sign(t, f, testkit.PKI().Expired.Key, alipay.FormV1)
		in := certMode(testkit.PKI().Expired)
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagCertExpired, diagnose.DiagNoKeys, diagnose.DiagRefusedCertVerifies)
		if s := text(t, r, diagnose.DiagCertExpired); !strings.Contains(s, in.Certs[0].Name) || !strings.Contains(s, "expired on") {
			t.Error(s)
		}
	})

	t.Run("CertUnchained", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), testkit.PKI().Rogue.Key, alipay.FormV1)
		in := certMode(testkit.PKI().Alipay, testkit.PKI().Rogue)
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagCertUnchained, diagnose.DiagRefusedCertVerifies)
		if s := text(t, r, diagnose.DiagCertUnchained); !strings.Contains(s, in.Certs[1].Name) {
			t.Error(s)
		}
		if r.Has(diagnose.DiagNoKeys) {
			t.Error("no_keys although the genuine cert is usable")
		}
	})

	t.Run("RootMissing", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := certMode(testkit.PKI().Alipay)
		in.RootCert = nil
		check(t, diagnose.Diagnose([]byte(f.Encode()), in), false, diagnose.DiagRootMissing, diagnose.DiagRefusedCertVerifies)
	})

	t.Run("AppCertConfiguredAsAlipays", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := certMode()
		in.Certs = []diagnose.Source{{Name: "certs/" + devpki.AppCertFile(testkit.CertAppID), Data: testkit.PKI().App.PEM}}
		r := diagnose.Diagnose([]byte(f.Encode()), in)
		check(t, r, false, diagnose.DiagCertIsAppCert, diagnose.DiagWrongKey)
	})

	t.Run("BodyDecodedTwice", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["biz_content"] = `{"memo":"100% sure","tag":"a+b"}`
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		// "% s" does not decode: the body does not even parse.
		r := diagnose.Diagnose([]byte(decodedBody(f)), keyMode(t))
		check(t, r, false, diagnose.DiagMalformedForm, diagnose.DiagBodyDecodedTwice)
		// It parses, but '+' becomes a space.
		g := dgForm(t)
		g["biz_content"] = `{"tag":"a+b"}`
		g = testkit.Sign(t, g, alipayKey, alipay.FormV1)
		r = diagnose.Diagnose([]byte(decodedBody(g)), keyMode(t))
		check(t, r, false, diagnose.DiagBodyDecodedTwice)
		// The raw body verifies, and says values hold '%'.
		r = diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, true, diagnose.DiagPercentInValues)
	})

	t.Run("ValuesEncodedTwice", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		f["biz_content"] = `{"app_name":"张三的试用小程序"}`
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		f["biz_content"] = url.QueryEscape(f["biz_content"])
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagValuesEncodedTwice)
	})

	t.Run("SignEncodedTwice", func(t *testing.T) {
		t.Parallel()
		f := signWithPlus(t, dgForm(t), alipayKey)
		f["sign"] = url.QueryEscape(f["sign"])
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagSignEncodedTwice)
	})

	t.Run("CharsetMismatch", func(t *testing.T) {
		t.Parallel()
		// Signed over GBK bytes, sent as UTF-8.
		f := dgForm(t)
		f["biz_content"] = `{"app_name":"张三的试用小程序"}`
		gbk := alipay.Form{}
		for k, v := range f {
			s, err := alipay.ToGBK(v)
			if err != nil {
				t.Fatal(err)
			}
			gbk[k] = s
		}
		signed := testkit.Sign(t, gbk, alipayKey, alipay.FormV1)
		f["sign"] = signed["sign"]
		r := diagnose.Diagnose([]byte(f.Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagCharsetMismatch)
	})

	t.Run("MalformedBody", func(t *testing.T) {
		t.Parallel()
		r := diagnose.Diagnose([]byte("app_id=1&sign=%zz"), keyMode(t))
		check(t, r, false, diagnose.DiagMalformedForm)
		r = diagnose.Diagnose([]byte("app_id=1&app_id=2&sign=x"), keyMode(t))
		check(t, r, false, diagnose.DiagMalformedForm)
		if r.Reason != "duplicate_parameter" {
			t.Errorf("reason = %s", r.Reason)
		}
	})

	t.Run("MissingSign", func(t *testing.T) {
		t.Parallel()
		r := diagnose.Diagnose([]byte(dgForm(t).Encode()), keyMode(t))
		check(t, r, false, diagnose.DiagMissingSign)
		if r.Reason != "missing_sign" {
			t.Errorf("reason = %s", r.Reason)
		}
	})

	t.Run("NoKeys", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		check(t, diagnose.Diagnose([]byte(f.Encode()), diagnose.DiagnoseInput{}), false, diagnose.DiagNoKeys)
		in := keyMode(t)
		in.PublicKeys[0].Data = []byte("not a key")
		check(t, diagnose.Diagnose([]byte(f.Encode()), in), false, diagnose.DiagKeyUnreadable, diagnose.DiagNoKeys)
	})

	t.Run("BothModes", func(t *testing.T) {
		t.Parallel()
		f := testkit.Sign(t, dgForm(t), alipayKey, alipay.FormV1)
		in := certMode(testkit.PKI().Alipay)
		in.PublicKeys = keyMode(t).PublicKeys
		check(t, diagnose.Diagnose([]byte(f.Encode()), in), true, diagnose.DiagBothModes)
	})

	t.Run("NotANotification", func(t *testing.T) {
		t.Parallel()
		f := dgForm(t)
		delete(f, "notify_id")
		f = testkit.Sign(t, f, alipayKey, alipay.FormV1)
		check(t, diagnose.Diagnose([]byte(f.Encode()), keyMode(t)), true, diagnose.DiagNotANotification)
	})

	t.Run("FindingsOrdered", func(t *testing.T) {
		t.Parallel()
		f := signWithPlus(t, dgForm(t), stranger)
		r := diagnose.Diagnose([]byte(rawBody(f)), keyMode(t))
		rank := map[diagnose.Level]int{diagnose.LevelError: 0, diagnose.LevelWarning: 1, diagnose.LevelInfo: 2}
		for i := 1; i < len(r.Findings); i++ {
			if rank[r.Findings[i-1].Level] > rank[r.Findings[i].Level] {
				t.Fatalf("findings out of order: %+v", r.Findings)
			}
		}
	})
}
