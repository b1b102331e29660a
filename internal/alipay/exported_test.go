package alipay_test

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// The functions exported for internal/diagnose answer as the gateway's own
// code does.

func TestVerifier_VerifyAt(t *testing.T) {
	t.Parallel()
	c := testkit.PKI().Expired
	sn := alipay.CertSN(c.Cert)
	v := keyVerifier(t, &alipay.App{ID: testkit.AppID, CertMode: true, Keys: []alipay.Key{
		{SN: sn, Pub: &c.Key.PublicKey, NotBefore: c.Cert.NotBefore, NotAfter: c.Cert.NotAfter},
	}})
	f := baseForm(t)
	f["alipay_cert_sn"] = sn
	f = testkit.Sign(t, f, c.Key, alipay.FormV1)
	m, err := v.VerifyAt(f, c.Cert.NotAfter.Add(-time.Hour))
	if err != nil || m.Form != alipay.FormV1 || m.CertSN != sn {
		t.Fatalf("within the cert's validity: m=%v err=%v", m, err)
	}
	_, err = v.VerifyAt(f, time.Now())
	wantCode(t, err, notify.EUNVERIFIED, "cert_expired")
	delete(f, "app_id")
	_, err = v.VerifyAt(f, c.Cert.NotAfter.Add(-time.Hour))
	wantCode(t, err, notify.EINVALID, "missing_parameter")
}

func TestDecodeSign(t *testing.T) {
	t.Parallel()
	sig := []byte{0xfb, 0xef, 0xbe, 0xfb, 0xef, 0xbe} // "++++++++"
	b64 := base64.StdEncoding.EncodeToString(sig)
	for _, s := range []string{b64, strings.ReplaceAll(b64, "+", " ")} {
		got, err := alipay.DecodeSign(s)
		if err != nil || !bytes.Equal(got, sig) {
			t.Errorf("DecodeSign(%q) = %x, %v", s, got, err)
		}
	}
	var corrupt base64.CorruptInputError
	if _, err := alipay.DecodeSign("not%base64"); !errors.As(err, &corrupt) {
		t.Errorf("err = %v, want a base64.CorruptInputError", err)
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	content := []byte("a=1&b=2")
	s1, s256 := sha1.Sum(content), sha256.Sum256(content)
	if got := alipay.Digest(crypto.SHA1, content); !bytes.Equal(got, s1[:]) {
		t.Errorf("SHA1: %x", got)
	}
	if got := alipay.Digest(crypto.SHA256, content); !bytes.Equal(got, s256[:]) {
		t.Errorf("SHA256: %x", got)
	}
}

func TestParseLeafCert(t *testing.T) {
	t.Parallel()
	// The Alipay cert file holds the signing cert, then its intermediate.
	c, err := alipay.ParseLeafCert(testkit.PKI().Expired.PEM)
	if err != nil || !c.Equal(testkit.PKI().Expired.Cert) {
		t.Fatalf("c=%v err=%v", c, err)
	}
	// A cert pasted as bare base64 DER, line breaks and all.
	der := base64.StdEncoding.EncodeToString(testkit.PKI().Alipay.Cert.Raw)
	if c, err := alipay.ParseLeafCert([]byte(der[:64] + "\n" + der[64:] + "\n")); err != nil || !c.Equal(testkit.PKI().Alipay.Cert) {
		t.Fatalf("bare base64: c=%v err=%v", c, err)
	}
	if _, err := alipay.ParseLeafCert([]byte("nope")); err == nil || err.Error() != "no certificate found" {
		t.Errorf("err = %v", err)
	}
}

func TestIsGBK(t *testing.T) {
	t.Parallel()
	for charset, want := range map[string]bool{"": false, "utf-8": false, "UTF8": false, "GBK": true, "gb2312": true, " GB18030 ": true} {
		if got, err := alipay.IsGBK(charset); err != nil || got != want {
			t.Errorf("IsGBK(%q) = %v, %v", charset, got, err)
		}
	}
	_, err := alipay.IsGBK("ISO-8859-1")
	wantCode(t, err, notify.EINVALID, "bad_charset")
}

func TestFromGBK(t *testing.T) {
	t.Parallel()
	gbk, err := alipay.ToGBK("张三的试用小程序")
	if err != nil {
		t.Fatal(err)
	}
	if got := alipay.FromGBK(gbk); got != "张三的试用小程序" {
		t.Errorf("FromGBK = %q", got)
	}
}

func TestForm_Method(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f    alipay.Form
		want string
	}{
		{alipay.Form{"msg_method": "alipay.open.mini.merchant.confirmed", "notify_type": "x"}, "alipay.open.mini.merchant.confirmed"},
		{alipay.Form{"notify_type": "open_app_auth_notify"}, "open_app_auth_notify"},
		{alipay.Form{}, ""},
	} {
		if got := tc.f.Method(); got != tc.want {
			t.Errorf("%v.Method() = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestForm_ValidUTF8(t *testing.T) {
	t.Parallel()
	if f := baseForm(t); !f.ValidUTF8() {
		t.Error("baseForm is not valid UTF-8")
	}
	if f := (alipay.Form{"memo": "\xff"}); f.ValidUTF8() {
		t.Error("a value with 0xff is valid UTF-8")
	}
	if f := (alipay.Form{"\xff": "x"}); f.ValidUTF8() {
		t.Error("a key with 0xff is valid UTF-8")
	}
}
