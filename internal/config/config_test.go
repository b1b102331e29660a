package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/config"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// Token keys: A (testkit.TokenKey) as base64 and as hex, B
// (testkit.OtherTokenKey) as base64, C (AES-128) as hex.
const (
	tokenKeyA    = testkit.TokenKeyBase64
	tokenKeyAHex = "3031323334353637383961626364656630313233343536373839616263646566"
	tokenKeyB    = testkit.OtherTokenKeyBase64
	tokenKeyC    = "30313233343536373839616263646566"
)

// files writes the test PKI and a public key, and returns their directory.
func files(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testkit.PKI().WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	b64, _ := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, "pub.txt"), []byte(b64), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := files(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	b64, _ := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	base := func(kv ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	yamlFile := p("apps.yaml")
	_ = os.WriteFile(yamlFile, []byte("apps:\n  - app_id: \"1\"\n    alipay_public_key_file: "+p("pub.txt")+
		"\n  - app_id: \"2\"\n    alipay_root_cert_file: "+p(devpki.RootCertFile)+
		"\n    alipay_public_cert_files: ["+p(devpki.AlipayCertFile)+", "+p(devpki.RotatedCertFile)+"]\n"), 0o644)
	badYAML := p("bad.yaml")
	_ = os.WriteFile(badYAML, []byte("apps:\n  - app_id: \"1\"\n    alipay_public_kee: x\n"), 0o644)

	t.Run("OK", func(t *testing.T) {
		for name, env := range map[string]map[string]string{
			"PublicKey":     base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64),
			"PublicKeyFile": base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY_FILE", p("pub.txt")),
			"Certs": base("ALIPAY_APP_ID", "1", "ALIPAY_ROOT_CERT_FILE", p(devpki.RootCertFile),
				"ALIPAY_PUBLIC_CERT_FILE", p(devpki.AlipayCertFile)+","+p(devpki.RotatedCertFile)),
			"YAML": base("GATEWAY_CONFIG", yamlFile),
			"OldTokenKeys": base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TOKEN_ENCRYPTION_KEY", tokenKeyA,
				"TOKEN_ENCRYPTION_OLD_KEYS", tokenKeyB+", "+tokenKeyC),
		} {
			t.Run(name, func(t *testing.T) {
				c, err := config.Load(env, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if c.HTTPAddr != ":8080" || c.InternalAddr != "" || c.MaxBodyBytes != 65536 || len(c.Apps) == 0 ||
					c.AuthURL != "https://openauth.alipay.com/oauth2/appToAppAuth.htm" || len(c.TrustedProxies) != 0 {
					t.Fatalf("%+v", c)
				}
			})
		}
	})
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"ErrNoDatabase":    {map[string]string{"ALIPAY_APP_ID": "1", "ALIPAY_PUBLIC_KEY": b64}, "DATABASE_URL"},
		"ErrNoApp":         {base(), "no Alipay app configured"},
		"ErrNoKey":         {base("ALIPAY_APP_ID", "1"), "no Alipay public key or cert"},
		"ErrKeyWithoutApp": {base("ALIPAY_PUBLIC_KEY", b64), "ALIPAY_APP_ID is not set"},
		"ErrBothModes": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "ALIPAY_ROOT_CERT_FILE", p(devpki.RootCertFile),
			"ALIPAY_PUBLIC_CERT_FILE", p(devpki.AlipayCertFile)), "choose one mode"},
		"ErrKeyAndKeyFile": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "ALIPAY_PUBLIC_KEY_FILE", p("pub.txt")), "choose one"},
		"ErrBadKey":        {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", "nonsense"), "ALIPAY_PUBLIC_KEY"},
		"ErrRogueCert": {base("ALIPAY_APP_ID", "1", "ALIPAY_ROOT_CERT_FILE", p(devpki.RootCertFile),
			"ALIPAY_PUBLIC_CERT_FILE", p(devpki.AlipayCertFile)+","+p(devpki.RogueCertFile)), devpki.RogueCertFile},
		"ErrExpiredCert": {base("ALIPAY_APP_ID", "1", "ALIPAY_ROOT_CERT_FILE", p(devpki.RootCertFile),
			"ALIPAY_PUBLIC_CERT_FILE", p(devpki.ExpiredCertFile)), "expired"},
		"ErrCertWithoutRoot": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_CERT_FILE", p(devpki.AlipayCertFile)), "ALIPAY_ROOT_CERT_FILE is not"},
		"ErrMissingFile":     {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY_FILE", p("nope")), "nope"},
		"ErrYAMLAndEnv":      {base("GATEWAY_CONFIG", yamlFile, "ALIPAY_APP_ID", "1"), "both set"},
		"ErrYAMLUnknownKey":  {base("GATEWAY_CONFIG", badYAML), "alipay_public_kee"},
		"ErrBadTokenKey":     {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TOKEN_ENCRYPTION_KEY", "short"), "TOKEN_ENCRYPTION_KEY"},
		"ErrBadEncryptKey":   {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "ALIPAY_ENCRYPT_KEY", "???"), "ALIPAY_ENCRYPT_KEY"},
		"ErrBadBodyLimit":    {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "MAX_BODY_BYTES", "0"), "MAX_BODY_BYTES"},
		"ErrBadWebhookConc":  {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "WEBHOOK_CONCURRENCY", "0"), "WEBHOOK_CONCURRENCY"},
		"ErrBadWebhookTime":  {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "WEBHOOK_TIMEOUT", "0s"), "WEBHOOK_TIMEOUT"},
		"ErrBadProxy":        {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TRUSTED_PROXIES", "10.0.0.0/8,ingress"), "TRUSTED_PROXIES"},
		"ErrInternalIsHTTP":  {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "INTERNAL_ADDR", ":8080"), "INTERNAL_ADDR"},
		"ErrInternalIsPprof": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "INTERNAL_ADDR", "127.0.0.1:6060", "PPROF_ADDR", "127.0.0.1:6060"), "INTERNAL_ADDR"},
		"ErrBadOldTokenKey": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TOKEN_ENCRYPTION_KEY", tokenKeyA,
			"TOKEN_ENCRYPTION_OLD_KEYS", tokenKeyB+",short"), "TOKEN_ENCRYPTION_OLD_KEYS: key 2"},
		"ErrEmptyOldTokenKey": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TOKEN_ENCRYPTION_KEY", tokenKeyA,
			"TOKEN_ENCRYPTION_OLD_KEYS", tokenKeyB+","), "TOKEN_ENCRYPTION_OLD_KEYS: key 2 is empty"},
		"ErrOldTokenKeyIsCurrent": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TOKEN_ENCRYPTION_KEY", tokenKeyA,
			"TOKEN_ENCRYPTION_OLD_KEYS", tokenKeyAHex), "old key 1 is the current key"},
		"ErrOldTokenKeysAlone": {base("ALIPAY_APP_ID", "1", "ALIPAY_PUBLIC_KEY", b64, "TOKEN_ENCRYPTION_OLD_KEYS", tokenKeyB),
			"TOKEN_ENCRYPTION_KEY is not"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(tc.env, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v; want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestLoad_TrustedProxies(t *testing.T) {
	t.Parallel()
	b64, _ := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	c, err := config.Load(map[string]string{
		"DATABASE_URL": "postgres://x@127.0.0.1/db", "ALIPAY_APP_ID": "1", "ALIPAY_PUBLIC_KEY": b64,
		"TRUSTED_PROXIES": "10.1.2.3/8, 192.168.0.7,fd00::/8,::ffff:172.16.0.1",
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.TrustedProxies {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.168.0.7/32 fd00::/8 172.16.0.1/32" {
		t.Fatalf("%v", got)
	}
}

func TestEnvVars(t *testing.T) {
	t.Parallel()
	got := strings.Join(config.EnvVars(), " ")
	for _, want := range []string{"DATABASE_URL", "HTTP_ADDR", "ALIPAY_APP_ID", "ALIPAY_PUBLIC_CERT_FILE", "GATEWAY_CONFIG", "OPS_API_TOKENS", "INTERNAL_ADDR"} {
		if !strings.Contains(got, want) {
			t.Fatalf("%s missing from %s", want, got)
		}
	}
}

// TestLoad_TokenKeys: TOKEN_ENCRYPTION_KEY seals, TOKEN_ENCRYPTION_OLD_KEYS
// open too.
func TestLoad_TokenKeys(t *testing.T) {
	t.Parallel()
	b64, _ := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	load := func(kv ...string) *config.Config {
		t.Helper()
		env := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db", "ALIPAY_APP_ID": "1", "ALIPAY_PUBLIC_KEY": b64}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		c, err := config.Load(env, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("OK", func(t *testing.T) {
		underB, err := load("TOKEN_ENCRYPTION_KEY", tokenKeyB).Sealer.Seal("token", "owner")
		if err != nil {
			t.Fatal(err)
		}
		rotated := load("TOKEN_ENCRYPTION_KEY", tokenKeyA, "TOKEN_ENCRYPTION_OLD_KEYS", tokenKeyC+","+tokenKeyB).Sealer
		if got, err := rotated.Open(underB, "owner"); err != nil || got != "token" || rotated.IsCurrent(underB, "owner") {
			t.Fatalf("%q %v", got, err)
		}
		underA, _ := rotated.Seal("token", "owner")
		if got, err := load("TOKEN_ENCRYPTION_KEY", tokenKeyAHex).Sealer.Open(underA, "owner"); err != nil || got != "token" {
			t.Fatalf("the current key did not seal: %q %v", got, err)
		}
	})
	t.Run("OKEmpty", func(t *testing.T) {
		if c := load("TOKEN_ENCRYPTION_KEY", tokenKeyA, "TOKEN_ENCRYPTION_OLD_KEYS", ""); c.Sealer == nil || len(c.TokenOldKeys) != 0 {
			t.Fatalf("%q", c.TokenOldKeys)
		}
	})
}

// TestLoad_Reconcile: RECONCILE_* take their defaults, 0 turns the schedule
// and the outage runs off, and nonsense is refused.
func TestLoad_Reconcile(t *testing.T) {
	t.Parallel()
	b64, _ := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	load := func(kv ...string) (*config.Config, error) {
		env := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db", "ALIPAY_APP_ID": "1", "ALIPAY_PUBLIC_KEY": b64}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return config.Load(env, time.Now())
	}
	t.Run("OK", func(t *testing.T) {
		c, err := load()
		if err != nil || c.ReconcileInterval != 6*time.Hour || c.ReconcileRate != 5 || c.ReconcileAfterOutage != 5*time.Minute {
			t.Fatalf("%+v %v", c, err)
		}
		if c, err = load("RECONCILE_INTERVAL", "0", "RECONCILE_AFTER_OUTAGE", "0", "RECONCILE_RATE", "0.5"); err != nil ||
			c.ReconcileInterval != 0 || c.ReconcileAfterOutage != 0 || c.ReconcileRate != 0.5 {
			t.Fatalf("%+v %v", c, err)
		}
	})
	t.Run("ErrBad", func(t *testing.T) {
		for _, kv := range [][]string{{"RECONCILE_INTERVAL", "10s"}, {"RECONCILE_INTERVAL", "-1h"}, {"RECONCILE_RATE", "-1"},
			{"RECONCILE_AFTER_OUTAGE", "-5m"}} {
			if _, err := load(kv...); err == nil || !strings.Contains(err.Error(), kv[0]) {
				t.Errorf("%v: %v", kv, err)
			}
		}
	})
}

// TestLoad_Console: the console's settings, and the key material kept for
// its verify page as each app was loaded from it.
func TestLoad_Console(t *testing.T) {
	t.Parallel()
	dir := files(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	yamlFile := p("apps.yaml")
	_ = os.WriteFile(yamlFile, []byte("apps:\n  - app_id: \"1\"\n    alipay_public_key_file: "+p("pub.txt")+
		"\n  - app_id: \"2\"\n    alipay_root_cert_file: "+p(devpki.RootCertFile)+
		"\n    alipay_public_cert_files: ["+p(devpki.AlipayCertFile)+", "+p(devpki.RotatedCertFile)+"]\n"), 0o644)
	env := func(kv ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db", "GATEWAY_CONFIG": yamlFile}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	t.Run("OK", func(t *testing.T) {
		c, err := config.Load(env("CONSOLE_SESSION_TTL", "30m", "CONSOLE_TIME_ZONE", "UTC"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !c.Console || c.ConsoleSessionTTL != 30*time.Minute || c.ConsoleLocation != time.UTC {
			t.Fatalf("%v %v %v", c.Console, c.ConsoleSessionTTL, c.ConsoleLocation)
		}
		key, cert := c.Keys["1"], c.Keys["2"]
		if len(key.PublicKeys) != 1 || !strings.Contains(key.PublicKeys[0].Name, "pub.txt") || len(key.PublicKeys[0].Data) == 0 ||
			cert.RootCert == nil || len(cert.Certs) != 2 || len(cert.PublicKeys) != 0 {
			t.Fatalf("keys %+v %+v", key, cert)
		}
		d, err := config.Load(env(), time.Now())
		if err != nil || d.ConsoleLocation.String() != "Asia/Shanghai" || d.ConsoleSessionTTL != 12*time.Hour {
			t.Fatalf("defaults: %v %v", d, err)
		}
	})
	for name, kv := range map[string][]string{
		"ErrTTL":      {"CONSOLE_SESSION_TTL", "10s"},
		"ErrLongTTL":  {"CONSOLE_SESSION_TTL", "1000h"},
		"ErrTimeZone": {"CONSOLE_TIME_ZONE", "Mars/Olympus"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := config.Load(env(kv...), time.Now()); err == nil || !strings.Contains(err.Error(), kv[0]) {
				t.Fatalf("%v: %v", kv, err)
			}
		})
	}
}

func TestLoad_TemplateSendRate(t *testing.T) {
	t.Parallel()
	b64, _ := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "apps.yaml")
	_ = os.WriteFile(yamlFile, []byte("apps:\n  - app_id: \"1\"\n    alipay_public_key: "+b64+"\n  - app_id: \"2\"\n    alipay_public_key: "+b64+"\n"), 0o644)
	load := func(rate string) (*config.Config, error) {
		env := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db", "GATEWAY_CONFIG": yamlFile}
		if rate != "-" {
			env["TEMPLATE_SEND_RATE"] = rate
		}
		return config.Load(env, time.Now())
	}
	t.Run("OK", func(t *testing.T) {
		for rate, want := range map[string]string{
			"-":           "20 map[]",
			"0":           "0 map[]",
			"50":          "50 map[]",
			"1=50, 2=0.5": "20 map[1:50 2:0.5]",
			"5,2=100":     "5 map[2:100]",
		} {
			c, err := load(rate)
			if err != nil {
				t.Fatalf("%q: %v", rate, err)
			}
			if got := fmt.Sprint(c.TemplateRateDefault, " ", c.TemplateRates); got != want {
				t.Errorf("%q: %s, want %s", rate, got, want)
			}
		}
	})
	t.Run("Err", func(t *testing.T) {
		for _, rate := range []string{"fast", "-1", "3=50", "1=50,1=60", "5,6", "1=", "NaN", "Inf"} {
			if _, err := load(rate); err == nil || !strings.Contains(err.Error(), "TEMPLATE_SEND_RATE") {
				t.Errorf("%q: %v", rate, err)
			}
		}
	})
}
