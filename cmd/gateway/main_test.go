package main_test

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// gatewayBinary builds cmd/gateway once per test run.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "gateway")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// pkiDir writes testkit's PKI as the gateway's cert files and returns their
// directory.
func pkiDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testkit.PKI().WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGateway_RefusesUnchainedCert(t *testing.T) {
	t.Parallel()
	dir := pkiDir(t)
	cmd := exec.Command(gatewayBinary(t))
	cmd.Env = []string{
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none",
		"ALIPAY_APP_ID=" + testkit.CertAppID,
		"ALIPAY_ROOT_CERT_FILE=" + filepath.Join(dir, devpki.RootCertFile),
		"ALIPAY_PUBLIC_CERT_FILE=" + filepath.Join(dir, devpki.AlipayCertFile) + "," + filepath.Join(dir, devpki.RogueCertFile),
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if err == nil || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, devpki.RogueCertFile) || !strings.Contains(msg, "does not chain") {
		t.Fatalf("err=%v stderr=%q", err, msg)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitReady waits up to 30 seconds for base/readyz to answer 200.
func waitReady(t *testing.T, base string, logs *testkit.LogBuffer) {
	t.Helper()
	if !testkit.Poll(30*time.Second, func() bool { code, _ := httpGet(t, base+"/readyz"); return code == 200 }) {
		t.Fatalf("not ready: %s", logs.String())
	}
}

// httpGet returns url's status and body; status 0 when it cannot be reached.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGateway_GracefulStop runs the real binary in certificate mode, sends
// notifications while SIGTERM arrives, and checks that every one answered
// success is stored, and that the process exits cleanly.
func TestGateway_GracefulStop(t *testing.T) {
	t.Parallel()
	dir, p := pkiDir(t), testkit.PKI()
	dbURL := pgtest.NewSchema(t)
	addr := freeAddr(t)
	cmd := exec.Command(gatewayBinary(t))
	cmd.Env = []string{
		"DATABASE_URL=" + dbURL, "HTTP_ADDR=" + addr, "LOG_LEVEL=warn",
		"ALIPAY_APP_ID=" + testkit.CertAppID,
		"ALIPAY_ROOT_CERT_FILE=" + filepath.Join(dir, devpki.RootCertFile),
		"ALIPAY_PUBLIC_CERT_FILE=" + filepath.Join(dir, devpki.AlipayCertFile) + "," + filepath.Join(dir, devpki.RotatedCertFile),
		"TOKEN_ENCRYPTION_KEY=" + testkit.TokenKeyBase64,
	}
	var logs testkit.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := "http://" + addr
	waitReady(t, base, &logs)

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				f := testkit.Sample(t, "audit-rejected", testkit.CertAppID) // a fresh notify_id
				signed, err := alipay.Sign(f, p.Alipay.Key, alipay.FormV1, crypto.SHA256)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := http.Post(base+"/alipay/notify", "application/x-www-form-urlencoded", strings.NewReader(signed.Encode()))
				if err != nil {
					return // the listener is closed: stop
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && string(b) == "success" {
					mu.Lock()
					acked = append(acked, f["notify_id"])
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before SIGTERM")
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var stored int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE notify_id = ANY($1)`, acked).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(acked) {
		t.Fatalf("%d acknowledged, %d stored", len(acked), stored)
	}
	t.Logf("%d notifications acknowledged before the stop, all stored", len(acked))
}

// TestGateway_InternalListener runs the real binary with INTERNAL_ADDR:
// probes, /metrics (with the cert's expiry) and the profiler answer there,
// and /readyz and /metrics not on HTTP_ADDR; with the database gone /readyz answers 503 "not ready",
// and the reason is logged once however often it is probed.
func TestGateway_InternalListener(t *testing.T) {
	t.Parallel()
	dir, p := pkiDir(t), testkit.PKI()
	proxy, dbURL := pgtest.NewProxy(t, pgtest.NewSchema(t))
	public, internal := "http://"+freeAddr(t), "http://"+freeAddr(t)
	cmd := exec.Command(gatewayBinary(t))
	cmd.Env = []string{
		"DATABASE_URL=" + dbURL, "HTTP_ADDR=" + strings.TrimPrefix(public, "http://"),
		"INTERNAL_ADDR=" + strings.TrimPrefix(internal, "http://"),
		"ALIPAY_APP_ID=" + testkit.CertAppID,
		"ALIPAY_ROOT_CERT_FILE=" + filepath.Join(dir, devpki.RootCertFile),
		"ALIPAY_PUBLIC_CERT_FILE=" + filepath.Join(dir, devpki.AlipayCertFile),
	}
	var logs testkit.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitReady(t, internal, &logs)

	t.Run("OK", func(t *testing.T) {
		for url, want := range map[string]int{
			internal + "/healthz": 200, internal + "/readyz": 200, internal + "/metrics": 200, internal + "/debug/pprof/": 200,
			public + "/healthz": 200, public + "/readyz": 404, public + "/metrics": 404, public + "/debug/pprof/": 404,
			internal + "/v1/notifications": 404,
		} {
			if code, _ := httpGet(t, url); code != want {
				t.Errorf("GET %s: %d; want %d", url, code, want)
			}
		}
		_, body := httpGet(t, internal+"/metrics")
		want := fmt.Sprintf(`alipay_gateway_cert_expiry_timestamp_seconds{app_id=%q,cert_sn=%q}`, testkit.CertAppID, alipay.CertSN(p.Alipay.Cert))
		if !strings.Contains(body, want) {
			t.Errorf("internal /metrics lacks %s", want)
		}
	})
	t.Run("Healthcheck", func(t *testing.T) {
		if out, err := exec.Command(gatewayBinary(t), "healthcheck", internal+"/readyz").CombinedOutput(); err != nil {
			t.Errorf("healthcheck of the internal /readyz: %v %s", err, out)
		}
		out, err := exec.Command(gatewayBinary(t), "healthcheck", public+"/readyz").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "404") {
			t.Errorf("healthcheck of the public /readyz: %v %q; want exit 1 and 404", err, out)
		}
	})
	t.Run("ErrDatabaseGone", func(t *testing.T) {
		proxy.Stop()
		defer proxy.Start()
		for range 5 {
			if code, body := httpGet(t, internal+"/readyz"); code != 503 || body != "not ready\n" {
				t.Fatalf("/readyz with the database gone: %d %q; want 503 %q", code, body, "not ready\n")
			}
		}
		if n := strings.Count(logs.String(), `"message":"not ready"`); n != 1 || !strings.Contains(logs.String(), `"reason":`) {
			t.Fatalf("%d \"not ready\" log lines for 5 probes; want 1 with the reason:\n%s", n, logs.String())
		}
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
}

// TestGateway_Reseal runs `gateway reseal` after a key rotation: the token
// sealed under the old key is counted by --dry-run, sealed under the new
// key by a run, and found current by the next.
func TestGateway_Reseal(t *testing.T) {
	t.Parallel()
	dbURL, env := commandEnv(t,
		"TOKEN_ENCRYPTION_KEY="+testkit.OtherTokenKeyBase64, // new
		"TOKEN_ENCRYPTION_OLD_KEYS="+testkit.TokenKeyBase64, // old: testkit.Sealer's
	)
	run := runner(env)
	run(t, "migrate")
	sealed, _ := testkit.Sealer(t).Seal("token", notify.TokenOwner(testkit.CertAppID, testkit.MerchantAppID))
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO authorizations (app_id, auth_app_id, status, app_auth_token, event_at, event_notify_id)
        VALUES ($1, $2, 'authorized', $3, 1, 'n1')`, testkit.CertAppID, testkit.MerchantAppID, sealed); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ args, want string }{
		{"reseal --dry-run", "reseal: 1 tokens to reseal (dry run: nothing written), 0 already current, 0 unreadable with any key; 0 authorizations changed meanwhile\n"},
		{"reseal", "reseal: 1 tokens resealed, 0 already current, 0 unreadable with any key; 0 authorizations changed meanwhile\n"},
		{"reseal", "reseal: 0 tokens resealed, 1 already current, 0 unreadable with any key; 0 authorizations changed meanwhile\n"},
	} {
		if got := run(t, strings.Fields(step.args)...); got != step.want {
			t.Fatalf("gateway %s:\n%s\nwant\n%s", step.args, got, step.want)
		}
	}
}

// commandEnv returns a fresh schema's URL and the environment of a gateway
// subcommand on it (the certificate-mode test app), with extra.
func commandEnv(t *testing.T, extra ...string) (dbURL string, env []string) {
	dir := pkiDir(t)
	dbURL = pgtest.NewSchema(t)
	env = append([]string{
		"DATABASE_URL=" + dbURL, "LOG_LEVEL=warn",
		"ALIPAY_APP_ID=" + testkit.CertAppID,
		"ALIPAY_ROOT_CERT_FILE=" + filepath.Join(dir, devpki.RootCertFile),
		"ALIPAY_PUBLIC_CERT_FILE=" + filepath.Join(dir, devpki.AlipayCertFile),
	}, extra...)
	return dbURL, env
}

// runner returns a function that runs the gateway binary with env and
// args, and returns what it printed; it fails the test if the gateway does.
func runner(env []string) func(t *testing.T, args ...string) string {
	return func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := exec.Command(gatewayBinary(t), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gateway %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// TestGateway_Prune runs `gateway prune --dry-run` and `gateway prune` on a
// database holding an old notification: the dry run deletes nothing.
func TestGateway_Prune(t *testing.T) {
	t.Parallel()
	dbURL, env := commandEnv(t, "RETENTION_TEMPLATE_MESSAGES=0")
	run := runner(env)
	run(t, "migrate")
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO notifications (app_id, notify_id, msg_method, biz_content, params, channel, content_form, status,
            content_digest, received_at, last_received_at, processed_at)
        SELECT $1, id, 'm', '', '{}', 'http', 'v2', 'applied', digest, at, at, at
        FROM (VALUES ('old', '\x01'::bytea, now() - interval '100 days'), ('new', '\x02', now())) AS v(id, digest, at)`, testkit.CertAppID); err != nil {
		t.Fatal(err)
	}
	rows := func() (n int) {
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM notifications`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := run(t, "prune", "--dry-run"); !strings.Contains(got, "template_messages      kept forever\n") ||
		!regexp.MustCompile(`(?m)^notifications +1 to delete \(older than .*; dry run: nothing deleted\)$`).MatchString(got) {
		t.Fatalf("gateway prune --dry-run:\n%s", got)
	}
	if n := rows(); n != 2 {
		t.Fatalf("%d notifications after the dry run, want 2", n)
	}
	if got := run(t, "prune"); !regexp.MustCompile(`(?m)^notifications +1 deleted$`).MatchString(got) {
		t.Fatalf("gateway prune:\n%s", got)
	}
	if n := rows(); n != 1 {
		t.Fatalf("%d notifications after the prune, want 1", n)
	}
}
