package alipay_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/smartwalle/ncrypto"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestParsePrivateKey(t *testing.T) {
	t.Parallel()
	k := testkit.AlipayKey()
	pkcs8PEM, err := devpki.PrivateKeyPKCS8PEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8B64, err := devpki.PrivateKeyPKCS8Base64(k)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1PEM := devpki.PrivateKeyPKCS1PEM(k)
	pkcs1B64 := devpki.PrivateKeyPKCS1Base64(k)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		wrap := func(s string) string {
			var b strings.Builder
			for len(s) > 64 {
				b.WriteString(s[:64] + "\r\n")
				s = s[64:]
			}
			return b.String() + s + "\n"
		}
		indent := func(b []byte) string {
			return "    " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\r\n    ") + "\n"
		}
		inputs := map[string]string{
			"PKCS8PEM":         string(pkcs8PEM),
			"PKCS1PEM":         string(pkcs1PEM),
			"PKCS8Base64":      pkcs8B64,
			"PKCS1Base64":      pkcs1B64,
			"PKCS8Base64Wrap":  wrap(pkcs8B64),
			"PKCS1Base64Space": "  " + pkcs1B64 + " \n\n",
			"PKCS8Base64Raw":   strings.TrimRight(pkcs8B64, "="),
			"PKCS8PEMIndented": indent(pkcs8PEM),
			"PKCS1PEMIndented": indent(pkcs1PEM),
			"PEMWithPreamble":  "Bag Attributes\n  localKeyID: 01\n" + string(pkcs8PEM),
			"PEMAfterCert":     string(testkit.PKI().Alipay.PEM) + string(pkcs1PEM),
			"PKCS1PEMTypedAs8": strings.ReplaceAll(string(pkcs1PEM), "RSA PRIVATE KEY", "PRIVATE KEY"),
		}
		for name, in := range inputs {
			got, err := alipay.ParsePrivateKey([]byte(in))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if !got.Equal(k) {
				t.Errorf("%s: parsed a different key", name)
			}
		}
		for _, s := range []string{pkcs8B64, pkcs1B64} {
			if strings.ContainsAny(s, "\r\n ") {
				t.Error("bare base64 output is not a single line")
			}
		}
		if b, _ := pem.Decode(pkcs8PEM); b == nil || b.Type != "PRIVATE KEY" {
			t.Error(`PrivateKeyPKCS8PEM is not a "PRIVATE KEY" block`)
		}
		if b, _ := pem.Decode(pkcs1PEM); b == nil || b.Type != "RSA PRIVATE KEY" {
			t.Error(`PrivateKeyPKCS1PEM is not an "RSA PRIVATE KEY" block`)
		}
		// Interoperates with ncrypto, which the alipay SDK uses.
		if got, err := ncrypto.DecodePrivateKey([]byte(pkcs8B64)).PKCS8().RSAPrivateKey(); err != nil || !got.Equal(k) {
			t.Errorf("ncrypto PKCS8 decode: %v", err)
		}
		if got, err := ncrypto.DecodePrivateKey([]byte(pkcs1B64)).PKCS1().RSAPrivateKey(); err != nil || !got.Equal(k) {
			t.Errorf("ncrypto PKCS1 decode: %v", err)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		der, _ := base64.StdEncoding.DecodeString(pkcs8B64)
		inputs := map[string]string{
			"Empty":        "",
			"Blank":        " \n\t",
			"NotBase64":    "this is not a key!",
			"Truncated":    base64.StdEncoding.EncodeToString(der[:len(der)/2]),
			"RandomBytes":  base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x30, 0x82}, 100)),
			"BrokenPEM":    "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n",
			"CertOnly":     string(testkit.PKI().Alipay.PEM),
			"PublicKeyPEM": "-----BEGIN PUBLIC KEY-----\n" + pkcs8B64 + "\n-----END PUBLIC KEY-----\n",
			"Encrypted":    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + pkcs8B64 + "\n-----END ENCRYPTED PRIVATE KEY-----\n",
			"LegacyEncrypted": "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n" +
				pkcs1B64 + "\n-----END RSA PRIVATE KEY-----\n",
		}
		for name, in := range inputs {
			k, err := alipay.ParsePrivateKey([]byte(in))
			if !errors.Is(err, alipay.ErrInvalidPrivateKey) || k != nil {
				t.Errorf("%s: got %v, want ErrInvalidPrivateKey", name, err)
			}
		}
	})

	t.Run("ErrNotRSA", func(t *testing.T) {
		t.Parallel()
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		_, edKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
		edPKCS8, _ := x509.MarshalPKCS8PrivateKey(edKey)
		ecSEC1, _ := x509.MarshalECPrivateKey(ecKey)
		inputs := map[string][]byte{
			"ECPKCS8PEM":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecPKCS8}),
			"ECPKCS8Base64": []byte(base64.StdEncoding.EncodeToString(ecPKCS8)),
			"Ed25519PEM":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edPKCS8}),
			"ECSEC1PEM": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 5, 43, 129, 4, 0, 34}}),
				pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecSEC1})...),
		}
		for name, in := range inputs {
			k, err := alipay.ParsePrivateKey(in)
			if !errors.Is(err, alipay.ErrNotRSAKey) || k != nil {
				t.Errorf("%s: got %v, want ErrNotRSAKey", name, err)
			}
		}
	})
}
