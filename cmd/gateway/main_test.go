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
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

const appID = "2021000000000002"

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

func pkiDir(t *testing.T) (string, *devpki.PKI) {
	t.Helper()
	p, err := devpki.NewPKI(appID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir, p
}

func TestGateway_RefusesUnchainedCert(t *testing.T) {
	t.Parallel()
	dir, _ := pkiDir(t)
	cmd := exec.Command(gatewayBinary(t))
	cmd.Env = []string{
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none",
		"ALIPAY_APP_ID=" + appID,
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

// TestGateway_GracefulStop runs the real binary in certificate mode, sends
// notifications while SIGTERM arrives, and checks that every one answered
// success is stored, and that the process exits cleanly.
func TestGateway_GracefulStop(t *testing.T) {
	t.Parallel()
	dir, p := pkiDir(t)
	dbURL := pgtest.NewSchema(t)
	addr := freeAddr(t)
	cmd := exec.Command(gatewayBinary(t))
	cmd.Env = []string{
		"DATABASE_URL=" + dbURL, "HTTP_ADDR=" + addr, "LOG_LEVEL=warn",
		"ALIPAY_APP_ID=" + appID,
		"ALIPAY_ROOT_CERT_FILE=" + filepath.Join(dir, devpki.RootCertFile),
		"ALIPAY_PUBLIC_CERT_FILE=" + filepath.Join(dir, devpki.AlipayCertFile) + "," + filepath.Join(dir, devpki.RotatedCertFile),
		"TOKEN_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				s, _ := samples.Get("audit-rejected") // a fresh copy of the form
				f := alipay.Form(s.Form)
				f["app_id"] = appID
				f["notify_id"] = fmt.Sprintf("graceful-%d-%d", i, j)
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

// TestGateway_Reseal runs `gateway reseal` after a key rotation: the token
// sealed under the old key is counted by --dry-run, sealed under the new
// key by a run, and found current by the next.
func TestGateway_Reseal(t *testing.T) {
	t.Parallel()
	dir, _ := pkiDir(t)
	dbURL := pgtest.NewSchema(t)
	env := []string{
		"DATABASE_URL=" + dbURL, "LOG_LEVEL=warn",
		"ALIPAY_APP_ID=" + appID,
		"ALIPAY_ROOT_CERT_FILE=" + filepath.Join(dir, devpki.RootCertFile),
		"ALIPAY_PUBLIC_CERT_FILE=" + filepath.Join(dir, devpki.AlipayCertFile),
		"TOKEN_ENCRYPTION_KEY=ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",      // new
		"TOKEN_ENCRYPTION_OLD_KEYS=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", // old
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := exec.Command(gatewayBinary(t), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gateway %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(t, "migrate")
	old, _ := notify.NewSealer([]byte("0123456789abcdef0123456789abcdef"))
	sealed, _ := old.Seal("token", notify.TokenOwner(appID, "2021000000000777"))
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO authorizations (app_id, auth_app_id, status, app_auth_token, event_at, event_notify_id)
        VALUES ($1, '2021000000000777', 'authorized', $2, 1, 'n1')`, appID, sealed); err != nil {
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
