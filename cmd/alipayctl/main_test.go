package main

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// ctl runs alipayctl with args and returns its exit status and output.
func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// mustCtl runs alipayctl and fails unless it exits 0.
func mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := ctl(t, args...)
	if code != 0 {
		t.Fatalf("alipayctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// oneLine asserts that stderr is exactly one line.
func oneLine(t *testing.T, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not one line: %q", stderr)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyFiles writes testkit.PKI's Alipay key pair (Alipay's key in public-key
// mode too, for testkit.CertAppID) as make run's dev keys are:
// the private key PKCS#8 PEM, the public key bare base64.
func keyFiles(t *testing.T) (priv, pub string) {
	t.Helper()
	dir := t.TempDir()
	p8, err := devpki.PrivateKeyPKCS8PEM(testkit.PKI().Alipay.Key)
	if err != nil {
		t.Fatal(err)
	}
	b64, err := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "private_key_pkcs8.pem", p8), writeFile(t, dir, "public_key.txt", []byte(b64+"\n"))
}

func keyVerifier(t *testing.T, pub *rsa.PublicKey) *alipay.Verifier {
	t.Helper()
	return testkit.Verifier(t, &alipay.App{ID: testkit.CertAppID, Keys: []alipay.Key{{Pub: pub}}})
}

func parseBody(t *testing.T, body string) alipay.Form {
	t.Helper()
	f, err := alipay.ParseForm([]byte(strings.TrimRight(body, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := ctl(t, c.name, "--help")
			if code != 0 || !strings.Contains(errOut, "example") || !strings.Contains(errOut, "usage: alipayctl "+c.name) {
				t.Errorf("exit %d, stderr:\n%s", code, errOut)
			}
		})
	}
	t.Run("Top", func(t *testing.T) {
		t.Parallel()
		code, out, _ := ctl(t, "--help")
		if code != 0 || !strings.Contains(out, "verify") {
			t.Errorf("exit %d: %s", code, out)
		}
		if code, _, _ := ctl(t); code != 2 {
			t.Errorf("no command: exit %d", code)
		}
	})
}

func TestErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"UnknownCommand":  {"nope"},
		"UnknownFlag":     {"send", "--nope"},
		"MissingFlagArg":  {"verify", "--key"},
		"SendNoKey":       {"send", "--print", "--sample", "audit-passed"},
		"SendNoSample":    {"send", "--print", "--key", "k"},
		"SendBoth":        {"send", "--print", "--sample", "audit-passed", "--method", "m", "--biz", "{}", "--key", "k"},
		"SendBadSample":   {"send", "--print", "--sample", "nope", "--key", "k"},
		"SendNoURL":       {"send", "--sample", "audit-passed", "--key", "k"},
		"SendMissingKey":  {"send", "--print", "--sample", "audit-passed", "--key", "/nonexistent/key.pem"},
		"SNNoFile":        {"sn", "/nonexistent.crt"},
		"SNNoArg":         {"sn"},
		"CertsNoArg":      {"certs"},
		"KeysExtraArg":    {"keys", "x"},
		"VerifyNoBody":    {"verify", "/nonexistent", "--public-key", "x"},
		"VerifyTwoBodies": {"verify", "a", "b", "--public-key", "x"},
		"ListenBadSecret": {"listen", "--secret", "whsec_not base64"},
		"ListenSecretAnd": {"listen", "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--events", "a.b"},
		"ListenExtraArg":  {"listen", "x", "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		"ListenBadAddr":   {"listen", "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--addr", "256.0.0.1:x"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := ctl(t, args...)
			if code == 0 {
				t.Fatalf("exit 0")
			}
			oneLine(t, errOut)
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	out := mustCtl(t, "keys", "--out", dir)
	if strings.Count(out, "\n") != 5 {
		t.Errorf("stdout:\n%s", out)
	}
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pub, err := alipay.ParsePublicKey(read(publicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{privateKeyPKCS1PEM, privateKeyPKCS8PEM, privateKeyPKCS8B64} {
		k, err := alipay.ParsePrivateKey(read(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !k.PublicKey.Equal(pub) {
			t.Errorf("%s is not the pair of %s", name, publicKeyFile)
		}
	}
}

func TestCertsAndSN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Flags after the positional argument.
	out := mustCtl(t, "certs", dir, "--app-id", "2021000000000042")
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	roots, err := alipay.ParseRootBundle(read(devpki.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if roots.Skipped == 0 && len(roots.Certs) < 3 {
		t.Errorf("root bundle holds no non-RSA root: %d certs, %d skipped", len(roots.Certs), roots.Skipped)
	}
	sn := func(name string) string {
		return strings.TrimSpace(mustCtl(t, "sn", filepath.Join(dir, name)))
	}
	for _, name := range []string{devpki.AlipayCertFile, devpki.RotatedCertFile} {
		c, err := alipay.ParseAlipayCert(read(name), roots, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := sn(name); got != c.SN || got != alipay.CertSN(c.Cert) {
			t.Errorf("sn %s = %s, want %s", name, got, c.SN)
		}
		if !strings.Contains(out, c.SN) {
			t.Errorf("certs output lacks %s's SN %s:\n%s", name, c.SN, out)
		}
	}
	if got := sn(devpki.RootCertFile); got != roots.SN || !strings.Contains(got, "_") {
		t.Errorf("root sn = %s, want %s", got, roots.SN)
	}
	if !strings.Contains(out, roots.SN) {
		t.Errorf("certs output lacks the root SN:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, devpki.AppCertFile("2021000000000042"))); err != nil {
		t.Error(err)
	}
	// The written private key is the cert's.
	k, err := alipay.ParsePrivateKey(read(devpki.AlipayPrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := alipay.ParseAlipayCert(read(devpki.AlipayCertFile), roots, time.Now())
	if !k.PublicKey.Equal(c.Key) {
		t.Error("alipay_private_key.pem is not the key of alipayCertPublicKey_RSA2.crt")
	}
	// Not a cert.
	code, _, errOut := ctl(t, "sn", filepath.Join(dir, devpki.AppPrivateKeyFile))
	if code == 0 || !strings.Contains(errOut, "no certificate") {
		t.Errorf("sn of a key: exit %d: %s", code, errOut)
	}
}

func TestSendPrint(t *testing.T) {
	t.Parallel()
	priv, _ := keyFiles(t)
	v := keyVerifier(t, &testkit.PKI().Alipay.Key.PublicKey)

	for _, name := range samples.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := mustCtl(t, "send", "--print", "--sample", name, "--key", priv, "--app-id", testkit.CertAppID)
			f := parseBody(t, out)
			m, err := v.Verify(f)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := samples.Get(name)
			if m.Form != alipay.FormV1 || f["app_id"] != testkit.CertAppID || f["notify_id"] == s.Form["notify_id"] || f["notify_id"] == "" {
				t.Errorf("form %s app_id %s notify_id %s", m.Form.Name, f["app_id"], f["notify_id"])
			}
			if _, _, err := v.Notification([]byte(strings.TrimSpace(out)), "test", time.Now()); err != nil {
				t.Errorf("the gateway's intake refuses it: %v", err)
			}
			for k, val := range s.Form {
				if k != "app_id" && k != "notify_id" && f[k] != val {
					t.Errorf("%s = %q, want the sample's %q", k, f[k], val)
				}
			}
		})
	}

	t.Run("UniqueNotifyIDs", func(t *testing.T) {
		t.Parallel()
		a := parseBody(t, mustCtl(t, "send", "--print", "--sample", "audit-passed", "--key", priv, "--app-id", testkit.CertAppID))
		b := parseBody(t, mustCtl(t, "send", "--print", "--sample", "audit-passed", "--key", priv, "--app-id", testkit.CertAppID))
		if a["notify_id"] == b["notify_id"] {
			t.Error("two sends share a notify_id")
		}
	})

	t.Run("V2NotifyIDNow", func(t *testing.T) {
		t.Parallel()
		f := parseBody(t, mustCtl(t, "send", "--print", "--sample", "audit-passed", "--key", priv, "--app-id", testkit.CertAppID, "--v2", "--notify-id", "resend-1", "--now"))
		m, err := v.Verify(f)
		if err != nil {
			t.Fatal(err)
		}
		ts, _ := strconv.ParseInt(f["utc_timestamp"], 10, 64)
		if m.Form != alipay.FormV2 || f["notify_id"] != "resend-1" || time.Since(time.UnixMilli(ts)) > time.Minute {
			t.Errorf("form %s notify_id %s utc_timestamp %s", m.Form.Name, f["notify_id"], f["utc_timestamp"])
		}
	})

	t.Run("Method", func(t *testing.T) {
		t.Parallel()
		f := parseBody(t, mustCtl(t, "send", "--print", "--method", "alipay.open.mini.version.audit.passed", "--biz", `{"mini_app_id":"1"}`, "--key", priv, "--app-id", testkit.CertAppID))
		if _, err := v.Verify(f); err != nil {
			t.Fatal(err)
		}
		ts, _ := strconv.ParseInt(f["utc_timestamp"], 10, 64)
		if f["biz_content"] != `{"mini_app_id":"1"}` || f["sign_type"] != "RSA2" || time.Since(time.UnixMilli(ts)) > time.Minute {
			t.Errorf("form = %v", f)
		}
	})

	t.Run("CertMode", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		p8, err := devpki.PrivateKeyPKCS8PEM(testkit.PKI().Rotated.Key)
		if err != nil {
			t.Fatal(err)
		}
		key := writeFile(t, dir, "k.pem", p8)
		cert := writeFile(t, dir, "c.crt", testkit.PKI().Rotated.PEM)
		f := parseBody(t, mustCtl(t, "send", "--print", "--sample", "merchant-confirmed", "--cert-key", key, "--cert", cert, "--app-id", testkit.CertAppID))
		sn := alipay.CertSN(testkit.PKI().Rotated.Cert)
		if f["alipay_cert_sn"] != sn {
			t.Errorf("alipay_cert_sn = %s, want %s", f["alipay_cert_sn"], sn)
		}
		cv := testkit.Verifier(t, testkit.CertApp()) // the Alipay and Rotated certs
		if m, err := cv.Verify(f); err != nil || m.CertSN != sn {
			t.Fatalf("verify: %v", err)
		}
		// A key that is not the cert's.
		code, _, errOut := ctl(t, "send", "--print", "--sample", "merchant-confirmed", "--cert-key", priv, "--cert", cert, "--app-id", testkit.CertAppID)
		if code == 0 || !strings.Contains(errOut, "not the private key") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		oneLine(t, errOut)
	})
}

func TestSend(t *testing.T) {
	t.Parallel()
	priv, _ := keyFiles(t)
	v := keyVerifier(t, &testkit.PKI().Alipay.Key.PublicKey)
	// A gateway: verifies, answers success.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "fail", http.StatusBadRequest)
			return
		}
		if _, _, err := v.Notification(body, "test", time.Now()); err != nil {
			http.Error(w, "fail", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, "success")
	}))
	t.Cleanup(srv.Close)

	t.Run("Success", func(t *testing.T) {
		t.Parallel()
		out := mustCtl(t, "send", "--url", srv.URL, "--sample", "auth-granted", "--key", priv, "--app-id", testkit.CertAppID, "--notify-id", "n-42")
		if out != "HTTP 200 success notify_id=n-42\n" {
			t.Errorf("stdout = %q", out)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		// Signed by another key: the gateway answers 403 fail.
		dir := t.TempDir()
		p8, _ := devpki.PrivateKeyPKCS8PEM(testkit.PKI().Rotated.Key)
		other := writeFile(t, dir, "other.pem", p8)
		code, out, errOut := ctl(t, "send", "--url", srv.URL, "--sample", "audit-passed", "--key", other, "--app-id", testkit.CertAppID)
		if code != 1 || !strings.HasPrefix(out, "HTTP 403 fail notify_id=") {
			t.Errorf("exit %d stdout %q", code, out)
		}
		oneLine(t, errOut)
	})

	t.Run("Unreachable", func(t *testing.T) {
		t.Parallel()
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		code, _, errOut := ctl(t, "send", "--url", dead.URL, "--sample", "audit-passed", "--key", priv, "--app-id", testkit.CertAppID, "--timeout", "5s")
		if code == 0 {
			t.Error("exit 0")
		}
		oneLine(t, errOut)
	})
}

func TestVerify(t *testing.T) {
	t.Parallel()
	priv, pub := keyFiles(t)
	dir := t.TempDir()
	good := mustCtl(t, "send", "--print", "--sample", "audit-rejected", "--key", priv, "--app-id", testkit.CertAppID)
	goodFile := writeFile(t, dir, "good.txt", []byte(good)) // with its trailing newline
	badFile := writeFile(t, dir, "bad.txt", []byte(strings.Replace(good, "0.0.1", "0.0.9", 1)))

	t.Run("Verifies", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := ctl(t, "verify", goodFile, "--key", pub)
		if code != 0 || !strings.Contains(out, "VERIFIED: content form v1") || errOut != "" {
			t.Errorf("exit %d\n%s\n%s", code, out, errOut)
		}
	})

	t.Run("InlineKey", func(t *testing.T) {
		t.Parallel()
		b64, _ := os.ReadFile(pub)
		if code, out, _ := ctl(t, "verify", "--public-key", strings.TrimSpace(string(b64)), goodFile); code != 0 {
			t.Errorf("exit %d\n%s", code, out)
		}
	})

	t.Run("DoesNotVerify", func(t *testing.T) {
		t.Parallel()
		code, out, errOut := ctl(t, "verify", badFile, "--key", pub)
		if code != 1 || !strings.Contains(out, "NOT VERIFIED: bad_signature") || !strings.Contains(out, "wrong_key") {
			t.Errorf("exit %d\n%s", code, out)
		}
		oneLine(t, errOut)
	})

	t.Run("PrivateKeyAsPublic", func(t *testing.T) {
		t.Parallel()
		code, out, _ := ctl(t, "verify", goodFile, "--key", priv)
		if code != 1 || !strings.Contains(out, "key_is_private") || !strings.Contains(out, "private_key_half_verifies") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		t.Parallel()
		code, out, _ := ctl(t, "verify", badFile, "--key", pub, "--json")
		var r diagnose.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if code != 1 || r.Verified || !r.Has(diagnose.DiagWrongKey) || len(r.Attempts) == 0 {
			t.Errorf("exit %d, report %+v", code, r)
		}
	})

	t.Run("CertMode", func(t *testing.T) {
		t.Parallel()
		cdir := t.TempDir()
		p8, _ := devpki.PrivateKeyPKCS8PEM(testkit.PKI().Alipay.Key)
		key := writeFile(t, cdir, "k.pem", p8)
		cert := writeFile(t, cdir, devpki.AlipayCertFile, testkit.PKI().Alipay.PEM)
		rotated := writeFile(t, cdir, devpki.RotatedCertFile, testkit.PKI().Rotated.PEM)
		expired := writeFile(t, cdir, devpki.ExpiredCertFile, testkit.PKI().Expired.PEM)
		root := writeFile(t, cdir, devpki.RootCertFile, testkit.PKI().RootBundlePEM)
		body := writeFile(t, cdir, "body.txt", []byte(mustCtl(t, "send", "--print", "--sample", "audit-passed", "--cert-key", key, "--cert", cert, "--app-id", testkit.CertAppID)))
		sn := alipay.CertSN(testkit.PKI().Alipay.Cert)

		code, out, _ := ctl(t, "verify", body, "--root", root, "--cert", rotated+","+cert)
		if code != 0 || !strings.Contains(out, "cert SN "+sn) {
			t.Errorf("exit %d\n%s", code, out)
		}
		code, out, _ = ctl(t, "verify", body, "--root", root, "--cert", rotated+","+expired)
		if code != 1 || !strings.Contains(out, "unknown_cert_sn") || !strings.Contains(out, "cert_expired") || !strings.Contains(out, expired) {
			t.Errorf("exit %d\n%s", code, out)
		}
	})

	t.Run("AppPublicKey", func(t *testing.T) {
		t.Parallel()
		adir := t.TempDir()
		appCert := writeFile(t, adir, devpki.AppCertFile(testkit.CertAppID), testkit.PKI().App.PEM)
		b64, _ := devpki.PublicKeyBase64(&testkit.PKI().App.Key.PublicKey)
		appPub := writeFile(t, adir, "app_public_key.txt", []byte(b64))
		code, out, _ := ctl(t, "verify", goodFile, "--key", appPub, "--app-public-key", appCert)
		if code != 1 || !strings.Contains(out, "key_is_app_key") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
}

// TestVerifyEnv is not parallel: it sets the gateway's environment
// variables, which verify reads when no key flag is given.
func TestVerifyEnv(t *testing.T) {
	priv, pub := keyFiles(t)
	dir := t.TempDir()
	f := sha1Body(t, priv)
	body := writeFile(t, dir, "body.txt", []byte(f))
	for _, k := range []string{"ALIPAY_PUBLIC_KEY", "ALIPAY_ROOT_CERT_FILE", "ALIPAY_PUBLIC_CERT_FILE", "ALIPAY_APP_ID", "GATEWAY_CONFIG"} {
		t.Setenv(k, "")
	}
	t.Setenv("ALIPAY_PUBLIC_KEY_FILE", pub)
	t.Setenv("ALIPAY_ALLOW_RSA1", "false")
	code, out, _ := ctl(t, "verify", body)
	if code != 1 || !strings.Contains(out, "sha1_refused") || !strings.Contains(out, "ALIPAY_PUBLIC_KEY_FILE "+pub) {
		t.Errorf("exit %d\n%s", code, out)
	}
	t.Setenv("ALIPAY_ALLOW_RSA1", "true")
	if code, out, _ := ctl(t, "verify", body); code != 0 || !strings.Contains(out, "sha1_allowed") {
		t.Errorf("exit %d\n%s", code, out)
	}
	// The flag wins over the environment.
	t.Setenv("ALIPAY_ALLOW_RSA1", "false")
	if code, out, _ := ctl(t, "verify", body, "--allow-rsa1"); code != 0 {
		t.Errorf("exit %d\n%s", code, out)
	}
	t.Setenv("ALIPAY_ALLOW_RSA1", "maybe")
	code, _, errOut := ctl(t, "verify", body)
	if code != 2 {
		t.Errorf("exit %d", code)
	}
	oneLine(t, errOut)
	t.Setenv("ALIPAY_ALLOW_RSA1", "")
	t.Setenv("ALIPAY_PUBLIC_KEY_FILE", "")
	code, _, errOut = ctl(t, "verify", body)
	if code != 2 || !strings.Contains(errOut, "no key") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	oneLine(t, errOut)
}

// sha1Body returns a body signed SHA1withRSA with sign_type=RSA.
func sha1Body(t *testing.T, privFile string) string {
	t.Helper()
	data, err := os.ReadFile(privFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := alipay.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	f := testkit.Sample(t, "audit-passed", testkit.CertAppID)
	f["sign_type"] = "RSA"
	return testkit.SignSHA1(t, f, k, alipay.FormV1).Encode()
}
