package devpki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // verifying SignRSA1.
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartwalle/ncrypto"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
)

const testAppID = "2021000000000000"

// sharedPKI is built once: key generation dominates test time.
var sharedPKI = sync.OnceValues(func() (*devpki.PKI, error) { return devpki.NewPKI(testAppID) })

func testPKI(t *testing.T) *devpki.PKI {
	t.Helper()
	p, err := sharedPKI()
	if err != nil {
		t.Fatalf("NewPKI: %v", err)
	}
	return p
}

// sharedKey is one RSA key reused by the key format tests.
var sharedKey = sync.OnceValues(devpki.NewKey)

func testKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := sharedKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	return k
}

func parseCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("PEM block type %q, want CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("ParseCertificate: %v", err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		t.Fatalf("trailing data after PEM blocks: %q", data)
	}
	return certs
}

// verifyOpts returns options trusting RootBundlePEM with Intermediate as the
// only intermediate, as a gateway in certificate mode would.
func verifyOpts(t *testing.T, p *devpki.PKI) x509.VerifyOptions {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.RootBundlePEM) {
		t.Fatal("AppendCertsFromPEM(RootBundlePEM) failed")
	}
	inter := x509.NewCertPool()
	inter.AddCert(p.Intermediate)
	return x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}

func TestNewKey(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	if got := k.N.BitLen(); got != 2048 {
		t.Errorf("key size %d bits, want 2048", got)
	}
	if err := k.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestNewPKI(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		if p.AppID != testAppID {
			t.Errorf("AppID %q, want %q", p.AppID, testAppID)
		}
		opts := verifyOpts(t, p)
		for name, c := range map[string]devpki.Cert{"Alipay": p.Alipay, "Rotated": p.Rotated, "App": p.App} {
			chains, err := c.Cert.Verify(opts)
			if err != nil {
				t.Errorf("%s: Verify: %v", name, err)
				continue
			}
			if len(chains) != 1 || len(chains[0]) != 3 || !chains[0][1].Equal(p.Intermediate) || !chains[0][2].Equal(p.Root) {
				t.Errorf("%s: unexpected chains %v", name, chains)
			}
		}
	})

	t.Run("OKChainFromPEM", func(t *testing.T) {
		t.Parallel()
		// A verifier given only the .crt files: leaf + intermediate from
		// the cert file, roots from the bundle.
		p := testPKI(t)
		opts := verifyOpts(t, p)
		opts.Intermediates = x509.NewCertPool()
		certs := parseCerts(t, p.Alipay.PEM)
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := certs[0].Verify(opts); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})

	t.Run("ErrRogueUnknownAuthority", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		opts := verifyOpts(t, p)
		// Offer the rogue intermediate too: it must still fail.
		certs := parseCerts(t, p.Rogue.PEM)
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, err := p.Rogue.Cert.Verify(opts)
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) {
			t.Errorf("Verify(Rogue) = %v, want UnknownAuthorityError", err)
		}
		// The impostor chain copies the genuine names.
		if got, want := p.Rogue.Cert.Issuer.String(), p.Intermediate.Subject.String(); got != want {
			t.Errorf("Rogue issuer %q, want impostor of %q", got, want)
		}
		if got, want := certs[1].Issuer.String(), p.Root.Subject.String(); got != want {
			t.Errorf("rogue intermediate issuer %q, want impostor of %q", got, want)
		}
		if certs[1].Equal(p.Intermediate) {
			t.Error("rogue intermediate is the genuine Intermediate")
		}
	})

	t.Run("ErrExpired", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		opts := verifyOpts(t, p)
		_, err := p.Expired.Cert.Verify(opts)
		var cie x509.CertificateInvalidError
		if !errors.As(err, &cie) || cie.Reason != x509.Expired {
			t.Errorf("Verify(Expired) = %v, want CertificateInvalidError Expired", err)
		}
		// Only the date is wrong: it is genuinely issued by Intermediate.
		// (It cannot be verified at a past time: the CAs' validity starts
		// one day ago.)
		if err := p.Expired.Cert.CheckSignatureFrom(p.Intermediate); err != nil {
			t.Errorf("Expired not signed by Intermediate: %v", err)
		}
		if d := time.Since(p.Expired.Cert.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("Expired NotAfter %v ago, want ~24h", d)
		}
	})

	t.Run("OKRoots", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		bundle := parseCerts(t, p.RootBundlePEM)
		if len(bundle) != 3 || !bundle[0].Equal(p.ECRoot) || !bundle[1].Equal(p.Root) || !bundle[2].Equal(p.SHA1Root) {
			t.Fatalf("RootBundlePEM holds %d certs, want ECRoot, Root, SHA1Root in order", len(bundle))
		}
		ecPub, ok := p.ECRoot.PublicKey.(*ecdsa.PublicKey)
		if !ok || ecPub.Curve != elliptic.P384() {
			t.Errorf("ECRoot public key %T, want ECDSA P-384", p.ECRoot.PublicKey)
		}
		if p.ECRootKey == nil || !p.ECRootKey.PublicKey.Equal(ecPub) {
			t.Error("ECRootKey does not match ECRoot")
		}
		for _, tc := range []struct {
			name string
			c    *x509.Certificate
			alg  x509.SignatureAlgorithm
			cn   string
		}{
			{"ECRoot", p.ECRoot, x509.ECDSAWithSHA384, devpki.ECRootCN},
			{"Root", p.Root, x509.SHA256WithRSA, devpki.RootCN},
			{"SHA1Root", p.SHA1Root, x509.SHA1WithRSA, devpki.SHA1RootCN},
		} {
			if tc.c.SignatureAlgorithm != tc.alg {
				t.Errorf("%s signature algorithm %v, want %v", tc.name, tc.c.SignatureAlgorithm, tc.alg)
			}
			if !bytes.Equal(tc.c.RawIssuer, tc.c.RawSubject) {
				t.Errorf("%s is not self-issued", tc.name)
			}
			want := "CN=" + tc.cn + ",OU=Certification Authority,O=Test Ant Financial,C=CN"
			if got := tc.c.Subject.String(); got != want {
				t.Errorf("%s subject %q, want %q", tc.name, got, want)
			}
		}
		// SHA1Root's own signature uses SHA-1, which Go refuses to check;
		// check the others are really self-signed.
		for _, c := range []*x509.Certificate{p.Root, p.ECRoot} {
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("%s: CheckSignatureFrom(self): %v", c.Subject.CommonName, err)
			}
		}
		if _, ok := p.Root.PublicKey.(*rsa.PublicKey); !ok || !p.RootKey.PublicKey.Equal(p.Root.PublicKey) {
			t.Error("RootKey does not match Root")
		}
	})

	t.Run("OKShape", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		now := time.Now()
		cas := map[string]*x509.Certificate{"Root": p.Root, "ECRoot": p.ECRoot, "SHA1Root": p.SHA1Root, "Intermediate": p.Intermediate}
		for name, c := range cas {
			if !c.BasicConstraintsValid || !c.IsCA {
				t.Errorf("%s: not a CA", name)
			}
			if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Errorf("%s: key usage %v", name, c.KeyUsage)
			}
			if d := now.Sub(c.NotBefore); d < 23*time.Hour || d > 25*time.Hour {
				t.Errorf("%s: NotBefore %v ago, want ~1 day", name, d)
			}
			if y := c.NotAfter.Sub(now).Hours() / 24 / 365; y < 19.9 || y > 20.1 {
				t.Errorf("%s: NotAfter in %.2f years, want 20", name, y)
			}
		}
		if p.Intermediate.Subject.CommonName != devpki.IntermediateCN || !bytes.Equal(p.Intermediate.RawIssuer, p.Root.RawSubject) {
			t.Errorf("Intermediate subject %q issuer %q", p.Intermediate.Subject, p.Intermediate.Issuer)
		}
		if err := p.Intermediate.CheckSignatureFrom(p.Root); err != nil {
			t.Errorf("Intermediate not signed by Root: %v", err)
		}
		if !p.IntermediateKey.PublicKey.Equal(p.Intermediate.PublicKey) {
			t.Error("IntermediateKey does not match Intermediate")
		}

		leaves := map[string]devpki.Cert{"Alipay": p.Alipay, "Rotated": p.Rotated, "Expired": p.Expired, "Rogue": p.Rogue, "App": p.App}
		serials := map[string]string{}
		for name, c := range cas {
			serials[c.SerialNumber.String()] = name
		}
		keys := map[string]string{}
		for name, l := range leaves {
			c := l.Cert
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("%s: IsCA %v key usage %v", name, c.IsCA, c.KeyUsage)
			}
			if c.SignatureAlgorithm != x509.SHA256WithRSA {
				t.Errorf("%s: signature algorithm %v", name, c.SignatureAlgorithm)
			}
			pub, ok := c.PublicKey.(*rsa.PublicKey)
			if !ok || pub.N.BitLen() != 2048 || !l.Key.PublicKey.Equal(pub) {
				t.Errorf("%s: key does not match certificate or is not RSA-2048", name)
			}
			fp := l.Key.N.String()
			if other, dup := keys[fp]; dup {
				t.Errorf("%s and %s share a key", name, other)
			}
			keys[fp] = name
			pemCerts := parseCerts(t, l.PEM)
			if len(pemCerts) != 2 || !pemCerts[0].Equal(c) || !bytes.Equal(pemCerts[1].RawSubject, c.RawIssuer) {
				t.Errorf("%s: PEM is not leaf + issuing intermediate", name)
			}
			if name != "Expired" {
				if d := now.Sub(c.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
					t.Errorf("%s: NotBefore %v ago, want 1h", name, d)
				}
				if y := c.NotAfter.Sub(now).Hours() / 24 / 365; y < 1.99 || y > 2.01 {
					t.Errorf("%s: NotAfter in %.2f years, want 2", name, y)
				}
			}
			for n, cert := range map[string]*x509.Certificate{name: c, name + " PEM intermediate": pemCerts[1]} {
				if prev, dup := serials[cert.SerialNumber.String()]; dup && !cert.Equal(p.Intermediate) {
					t.Errorf("%s and %s share a serial", n, prev)
				}
				serials[cert.SerialNumber.String()] = n
			}
		}
		for s, name := range serials {
			n, _ := new(big.Int).SetString(s, 10)
			if n.Sign() <= 0 || n.BitLen() != 128 {
				t.Errorf("%s: serial %s is not a positive 128-bit integer", name, s)
			}
		}
		wantAlipay := "CN=" + devpki.AlipayCN + ",OU=Alipay,O=Test Alipay,C=CN"
		for _, name := range []string{"Alipay", "Rotated", "Expired", "Rogue"} {
			if got := leaves[name].Cert.Subject.String(); got != wantAlipay {
				t.Errorf("%s subject %q, want %q", name, got, wantAlipay)
			}
		}
		if got := p.App.Cert.Subject.CommonName; got != testAppID {
			t.Errorf("App CN %q, want %q", got, testAppID)
		}
		if !strings.HasPrefix(p.App.Cert.Subject.String(), "CN="+testAppID+",OU=Alipay,O=") {
			t.Errorf("App subject %q", p.App.Cert.Subject)
		}
	})

	t.Run("ErrInvalidAppID", func(t *testing.T) {
		t.Parallel()
		for _, id := range []string{"", "../x", "a/b", `a\b`, "20 21", "应用", strings.Repeat("1", 65)} {
			if p, err := devpki.NewPKI(id); err == nil || p != nil {
				t.Errorf("NewPKI(%q) = %v, %v; want error", id, p, err)
			}
		}
	})
}

func TestNewPKIIndependent(t *testing.T) {
	t.Parallel()
	start := time.Now()
	p, err := devpki.NewPKI("app_2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NewPKI took %v", time.Since(start))
	q := testPKI(t)
	if p.Alipay.Key.Equal(q.Alipay.Key) || p.Root.Equal(q.Root) {
		t.Error("two PKIs share keys or certificates")
	}
	// q's leaves must not verify against p's roots.
	if _, err := q.Alipay.Cert.Verify(verifyOpts(t, p)); err == nil {
		t.Error("leaf of one PKI verifies against another PKI's roots")
	}
}

func TestPublicKeyBase64(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		k := testKey(t)
		s, err := devpki.PublicKeyBase64(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(s, "\r\n -") {
			t.Errorf("PublicKeyBase64 is not bare one-line base64: %q", s)
		}
		pub, err := ncrypto.DecodePublicKey([]byte(s)).PKIX().RSAPublicKey()
		if err != nil {
			t.Fatalf("ncrypto decode: %v", err)
		}
		if !pub.Equal(&k.PublicKey) {
			t.Error("ncrypto decoded a different key")
		}
	})

	t.Run("ErrNilKey", func(t *testing.T) {
		t.Parallel()
		if _, err := devpki.PublicKeyBase64(nil); err == nil {
			t.Error("PublicKeyBase64(nil): want error")
		}
		if _, err := devpki.PublicKeyPEM(&rsa.PublicKey{}); err == nil {
			t.Error("PublicKeyPEM(zero key): want error")
		}
	})
}

func TestPublicKeyPEM(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	b, err := devpki.PublicKeyPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
		t.Fatalf(`PublicKeyPEM is not a single "PUBLIC KEY" block: %q`, b)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey.Equal(pub) {
		t.Error("PEM holds a different key")
	}
	nc, err := ncrypto.DecodePublicKey(b).PKIX().RSAPublicKey()
	if err != nil || !nc.Equal(&k.PublicKey) {
		t.Errorf("ncrypto decode: %v", err)
	}
}

func TestPrivateKeyNil(t *testing.T) {
	t.Parallel()
	if b := devpki.PrivateKeyPKCS1PEM(nil); b != nil {
		t.Error("PrivateKeyPKCS1PEM(nil) != nil")
	}
	if s := devpki.PrivateKeyPKCS1Base64(nil); s != "" {
		t.Error(`PrivateKeyPKCS1Base64(nil) != ""`)
	}
	if _, err := devpki.PrivateKeyPKCS8PEM(nil); err == nil {
		t.Error("PrivateKeyPKCS8PEM(nil): want error")
	}
	if _, err := devpki.PrivateKeyPKCS8Base64(nil); err == nil {
		t.Error("PrivateKeyPKCS8Base64(nil): want error")
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	content := []byte("app_id=" + testAppID + "&charset=utf-8&notify_id=1&out_trade_no=T1&total_amount=0.01&trade_status=TRADE_SUCCESS")

	t.Run("OKRSA2", func(t *testing.T) {
		t.Parallel()
		k := testKey(t)
		s, err := devpki.SignRSA2(k, content)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(content)
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, h[:], sig); err != nil {
			t.Errorf("VerifyPKCS1v15 SHA256: %v", err)
		}
		if err := ncrypto.RSAVerifyPKCS1v15(content, sig, &k.PublicKey, crypto.SHA256); err != nil {
			t.Errorf("ncrypto verify: %v", err)
		}
		// Deterministic (PKCS#1 v1.5).
		if s2, _ := devpki.SignRSA2(k, content); s2 != s {
			t.Error("SignRSA2 is not deterministic")
		}
	})

	t.Run("OKRSA1", func(t *testing.T) {
		t.Parallel()
		k := testKey(t)
		s, err := devpki.SignRSA1(k, content)
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := base64.StdEncoding.DecodeString(s)
		h := sha1.Sum(content) //nolint:gosec // verifying SignRSA1.
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA1, h[:], sig); err != nil {
			t.Errorf("VerifyPKCS1v15 SHA1: %v", err)
		}
		h2 := sha256.Sum256(content)
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, h2[:], sig); err == nil {
			t.Error("RSA1 signature verifies as RSA2")
		}
	})

	t.Run("ErrWrongKey", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		s, err := devpki.SignRSA2(p.Rogue.Key, content)
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := base64.StdEncoding.DecodeString(s)
		h := sha256.Sum256(content)
		if err := rsa.VerifyPKCS1v15(p.Alipay.Cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], sig); err == nil {
			t.Error("Rogue signature verifies with Alipay's key")
		}
	})

	t.Run("ErrNilKey", func(t *testing.T) {
		t.Parallel()
		if _, err := devpki.SignRSA2(nil, content); err == nil {
			t.Error("SignRSA2(nil): want error")
		}
		if _, err := devpki.SignRSA1(nil, content); err == nil {
			t.Error("SignRSA1(nil): want error")
		}
	})
}

func TestWriteDir(t *testing.T) {
	t.Parallel()

	certFiles := []string{
		"alipayRootCert.crt",
		"alipayCertPublicKey_RSA2.crt",
		"alipayCertPublicKey_RSA2_rotated.crt",
		"alipayCertPublicKey_RSA2_expired.crt",
		"alipayCertPublicKey_RSA2_rogue.crt",
		"appCertPublicKey_" + testAppID + ".crt",
	}
	keyFiles := []string{"alipay_private_key.pem", "alipay_rotated_private_key.pem", "app_private_key.pem"}

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		dir := filepath.Join(t.TempDir(), "new", "pki")
		if err := p.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v, want 0700", st.Mode().Perm())
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(certFiles)+len(keyFiles) {
			t.Errorf("wrote %d files, want %d", len(entries), len(certFiles)+len(keyFiles))
		}
		for _, name := range certFiles {
			checkMode(t, filepath.Join(dir, name), 0o644)
		}
		for _, name := range keyFiles {
			checkMode(t, filepath.Join(dir, name), 0o600)
		}

		read := func(name string) []byte {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		bundle := parseCerts(t, read(certFiles[0]))
		if len(bundle) != 3 || !bundle[1].Equal(p.Root) {
			t.Errorf("root bundle holds %d certs", len(bundle))
		}
		for i, c := range []devpki.Cert{p.Alipay, p.Rotated, p.Expired, p.Rogue, p.App} {
			certs := parseCerts(t, read(certFiles[i+1]))
			if len(certs) != 2 || !certs[0].Equal(c.Cert) {
				t.Errorf("%s does not hold its leaf + intermediate", certFiles[i+1])
			}
		}
		for i, c := range []devpki.Cert{p.Alipay, p.Rotated, p.App} {
			b := read(keyFiles[i])
			if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
				t.Errorf("%s is not PKCS#8 PEM", keyFiles[i])
			}
			blk, _ := pem.Decode(b)
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil || !c.Key.Equal(k) {
				t.Errorf("%s: parse back: %v", keyFiles[i], err)
			}
		}
	})

	t.Run("OKOverwrite", func(t *testing.T) {
		t.Parallel()
		p := testPKI(t)
		dir := t.TempDir()
		// Pre-existing files with wrong modes and content get replaced.
		for _, name := range append(append([]string{}, certFiles...), keyFiles...) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, name), 0o666); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		for _, name := range certFiles {
			checkMode(t, filepath.Join(dir, name), 0o644)
		}
		for _, name := range keyFiles {
			checkMode(t, filepath.Join(dir, name), 0o600)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, keyFiles[0])); bytes.Equal(b, []byte("old")) {
			t.Error("old content not replaced")
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != len(certFiles)+len(keyFiles) {
			t.Errorf("%d files in dir, want %d (temporary files left?)", len(entries), len(certFiles)+len(keyFiles))
		}
	})

	t.Run("ErrDirIsFile", func(t *testing.T) {
		t.Parallel()
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := testPKI(t).WriteDir(f); err == nil {
			t.Error("WriteDir onto a file: want error")
		}
	})

	t.Run("ErrEmptyPKI", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		if err := (&devpki.PKI{AppID: testAppID}).WriteDir(dir); err == nil {
			t.Error("WriteDir of zero PKI: want error")
		}
		if err := (*devpki.PKI)(nil).WriteDir(dir); err == nil {
			t.Error("WriteDir of nil PKI: want error")
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed WriteDir created the directory: %v", err)
		}
	})
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", filepath.Base(path), got, want)
	}
}
