package stdwebhook_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// whgoDir is the Go receiver of docs/webhook-signing.md, a module of its own
// that requires the official Go library.
const whgoDir = "../../deploy/dev/whgo"

// startReceiver runs a receiver of docs/webhook-signing.md with secret and
// returns its URL (from its first line, "listening on URL"); the test
// stops it at the end.
func startReceiver(t *testing.T, cmd *exec.Cmd, secret string) string {
	t.Helper()
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret, "PORT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		url, found := strings.CutPrefix(line, "listening on ")
		if !ok || !found {
			t.Fatalf("the receiver says %q: %s", line, stderr.String())
		}
		return url
	case <-time.After(30 * time.Second):
		t.Fatalf("the receiver did not start: %s", stderr.String())
	}
	return ""
}

// goReceiver builds and starts the Go receiver, or skips the test, saying
// why, when the official Go library cannot be had (neither in the module
// cache nor from the module proxy).
func goReceiver(t *testing.T, secret string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("SKIPPED: no go command: the Go receiver example is not checked")
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	download := exec.Command(goTool, "mod", "download")
	download.Dir, download.Env = whgoDir, env
	if out, err := download.CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: the official Go library is not in the module cache and cannot be downloaded: the Go receiver example is not checked: %v: %s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "whgo")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir, build.Env = whgoDir, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", whgoDir, err, out)
	}
	return startReceiver(t, exec.Command(bin, "-addr", "127.0.0.1:0"), secret)
}

// nodeReceiver starts the Node receiver, or skips the test as
// officialJS does.
func nodeReceiver(t *testing.T, secret string) string {
	t.Helper()
	officialJS(t) // skips when node or the library is missing
	node, _ := exec.LookPath("node")
	return startReceiver(t, exec.Command(node, filepath.Join(whcheckDir, "receiver.js")), secret)
}

// TestSign_OfficialReceivers sends events signed by SetHeaders to the
// receivers of docs/webhook-signing.md, which verify with the official Go
// and JavaScript libraries: they accept the genuine ones, during a rotation
// too, and refuse the rest with 400.
func TestSign_OfficialReceivers(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(*testing.T, string) string{"Go": goReceiver, "Node": nodeReceiver} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			secret, err := stdwebhook.NewSecret()
			if err != nil {
				t.Fatal(err)
			}
			key := mustKey(t, secret)
			other := mustKey(t, vectors["Rust"].secret)
			url := start(t, secret)
			body := []byte(interopBodies()[0])
			now := time.Now()
			for _, c := range []struct {
				name string
				ts   time.Time
				body []byte
				keys [][]byte
				want int
			}{
				{"OK", now, body, [][]byte{key}, http.StatusNoContent},
				{"OKRotation", now, body, [][]byte{other, key}, http.StatusNoContent},
				{"OKNonASCII", now, []byte(interopBodies()[1]), [][]byte{key}, http.StatusNoContent},
				{"ErrOtherSecret", now, body, [][]byte{other}, http.StatusBadRequest},
				{"ErrTooOld", now.Add(-stdwebhook.Tolerance - time.Minute), body, [][]byte{key}, http.StatusBadRequest},
				{"ErrUnsigned", now, body, nil, http.StatusBadRequest},
			} {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if c.keys != nil {
					stdwebhook.SetHeaders(req.Header, "evt_42", c.ts, c.body, c.keys...)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.want {
					t.Errorf("%s: HTTP %d %s, want %d", c.name, resp.StatusCode, answer, c.want)
				}
			}
		})
	}
}
