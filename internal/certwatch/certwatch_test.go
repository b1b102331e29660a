package certwatch_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/certwatch"
	"github.com/alipay-notify-gateway/gateway/internal/config"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// apps loads, with the real config code, a public-key app and a
// certificate-mode app with two certs (a rotation) from the test PKI.
func apps(t *testing.T) []*alipay.App {
	t.Helper()
	dir := t.TempDir()
	if err := testkit.PKI().WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	b64, err := devpki.PublicKeyBase64(&testkit.PKI().Alipay.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	yaml := "apps:\n  - app_id: \"" + testkit.AppID + "\"\n    alipay_public_key: " + b64 +
		"\n  - app_id: \"" + testkit.CertAppID + "\"\n    alipay_root_cert_file: " + p(devpki.RootCertFile) +
		"\n    alipay_public_cert_files: [" + p(devpki.AlipayCertFile) + ", " + p(devpki.RotatedCertFile) + "]\n"
	if err := os.WriteFile(p("gateway.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db", "GATEWAY_CONFIG": p("gateway.yaml")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Apps
}

func TestLevel(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for name, tc := range map[string]struct {
		left time.Duration
		want zerolog.Level
	}{
		"In60Days":       {60 * day, zerolog.NoLevel},
		"In31Days":       {31 * day, zerolog.NoLevel},
		"In30Days":       {30 * day, zerolog.WarnLevel},
		"In10Days":       {10 * day, zerolog.WarnLevel},
		"AtNotAfter":     {0, zerolog.WarnLevel}, // still valid (alipay.Key.ValidAt)
		"Expired":        {-time.Second, zerolog.ErrorLevel},
		"ExpiredLongAgo": {-400 * day, zerolog.ErrorLevel},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := certwatch.Level(now.Add(tc.left), now); got != tc.want {
				t.Fatalf("Level(now%+v) = %v; want %v", tc.left, got, tc.want)
			}
		})
	}
}

// start starts the watch at now, its context already done (the check runs
// once), and returns its metrics and its log.
func start(t *testing.T, as []*alipay.App, now time.Time) (*metrics.Metrics, string) {
	t.Helper()
	m := metrics.New()
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	certwatch.Start(ctx, certwatch.Config{Apps: as, Metrics: m, Logger: zerolog.New(&logs), Now: func() time.Time { return now }})
	return m, logs.String()
}

func TestStart(t *testing.T) {
	t.Parallel()
	as := apps(t)
	var certs []alipay.Key
	for _, a := range as {
		if a.CertMode {
			certs = append(certs, a.Keys...)
		}
	}
	if len(certs) != 2 || certs[0].NotAfter.IsZero() {
		t.Fatalf("want 2 certs with a NotAfter; got %+v", certs)
	}

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		m, logs := start(t, as, time.Now())
		if logs != "" {
			t.Errorf("certs valid for two years logged %s", logs)
		}
		got := map[string]float64{}
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "alipay_gateway_cert_expiry_timestamp_seconds" {
				continue
			}
			for _, s := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range s.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["app_id"] != testkit.CertAppID {
					t.Errorf("gauge for app %q; want only the cert app %s", labels["app_id"], testkit.CertAppID)
				}
				got[labels["cert_sn"]] = s.GetGauge().GetValue()
			}
		}
		if len(got) != len(certs) {
			t.Errorf("gauge for %d certs; want %d: %v", len(got), len(certs), got)
		}
		for _, k := range certs {
			if v, ok := got[k.SN]; !ok || v != float64(k.NotAfter.Unix()) {
				t.Errorf("cert %s: gauge %v (set %v); want %d", k.SN, v, ok, k.NotAfter.Unix())
			}
		}
	})
	for name, tc := range map[string]struct {
		before time.Duration // before the first cert's NotAfter
		level  string
	}{
		"ErrExpiringIn10Days": {10 * 24 * time.Hour, "warn"},
		"ErrExpired":          {-time.Hour, "error"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, logs := start(t, as, certs[0].NotAfter.Add(-tc.before))
			lines := strings.Split(strings.TrimSpace(logs), "\n")
			if len(lines) != len(certs) {
				t.Fatalf("%d log lines; want one per cert (%d):\n%s", len(lines), len(certs), logs)
			}
			for i, k := range certs {
				for _, want := range []string{`"level":"` + tc.level + `"`, `"app_id":"` + testkit.CertAppID + `"`, `"cert_sn":"` + k.SN + `"`,
					`"not_after":"` + k.NotAfter.UTC().Format(time.RFC3339) + `"`} {
					if !strings.Contains(lines[i], want) {
						t.Errorf("line %d lacks %s: %s", i, want, lines[i])
					}
				}
			}
		})
	}
}
