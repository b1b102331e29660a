package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// gateway is one gateway process the soak started.
type gateway struct {
	name string
	port int
	cmd  *exec.Cmd
	log  string        // its log file
	done chan struct{} // closed once it has exited
}

// ignoredEnv reports whether the gateways must not inherit a variable of
// the caller's: another app's settings, or listeners that would move the
// probes and metrics the soak reads (INTERNAL_ADDR) or collide between two
// gateways (PPROF_ADDR).
func ignoredEnv(name string) bool {
	return strings.HasPrefix(name, "ALIPAY_") || name == "GATEWAY_CONFIG" || name == "INTERNAL_ADDR" || name == "PPROF_ADDR"
}

// startGateway starts a gateway on 127.0.0.1:port with dbURL and the
// extra settings (NAME=value), logging to WORK/name.log, and waits up to a
// minute for its /readyz.
func (s *soak) startGateway(ctx context.Context, name string, port int, dbURL string, extra ...string) (*gateway, error) {
	logPath := filepath.Join(s.work, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !ignoredEnv(k) {
			env = append(env, kv)
		}
	}
	env = append(env,
		"DATABASE_URL="+dbURL,
		"ALIPAY_APP_ID="+appID,
		"ALIPAY_PUBLIC_KEY_FILE="+s.publicKeyFile,
		"TOKEN_ENCRYPTION_KEY="+s.tokenKey,
		"OPS_API_TOKENS="+s.opsToken,
		"HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
		"LOG_LEVEL="+s.logLevel,
	)
	env = append(env, extra...)
	cmd := exec.Command(s.gatewayBin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logFile, logFile
	// A process group of its own: a Ctrl-C reaches the soak, which stops
	// the gateway with SIGTERM, not the gateway itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("gateway %s: %w", name, err)
	}
	g := &gateway{name: name, port: port, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(g.done) }()
	s.gateways[name] = g

	deadline := time.Now().Add(time.Minute)
	for {
		if code, _, err := get(g.url("/readyz")); err == nil && code == http.StatusOK {
			s.logf("gateway %s ready on 127.0.0.1:%d (pid %d)", name, port, g.pid())
			return g, nil
		}
		select {
		case <-g.done:
			tail(os.Stderr, logPath, 20)
			delete(s.gateways, name)
			return nil, fmt.Errorf("gateway %s exited at start (log: %s)", name, logPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("gateway %s not ready after 60s (log: %s)", name, logPath)
		}
	}
}

func (g *gateway) pid() int { return g.cmd.Process.Pid }

func (g *gateway) url(path string) string { return "http://127.0.0.1:" + strconv.Itoa(g.port) + path }

// stop sends SIGTERM and waits for the gateway to finish.
func (s *soak) stop(g *gateway) { s.signal(g, syscall.SIGTERM) }

// kill9 kills the gateway with SIGKILL, as a crash, and waits for it.
func (s *soak) kill9(g *gateway) { s.signal(g, syscall.SIGKILL) }

func (s *soak) signal(g *gateway, sig syscall.Signal) {
	if g == nil {
		return
	}
	_ = g.cmd.Process.Signal(sig)
	<-g.done
	delete(s.gateways, g.name)
}

// metric returns the sum of a metric's series on the gateway (0 when it
// cannot be read).
func (g *gateway) metric(name string) int64 {
	code, body, err := get(g.url("/metrics"))
	if err != nil || code != http.StatusOK {
		return 0
	}
	return sumMetric(body, name)
}

// sumMetric sums the series of metric name in a Prometheus text
// exposition, rounded to a whole number.
func sumMetric(text []byte, name string) int64 {
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			if v, err := strconv.ParseFloat(rest[i+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return int64(sum + 0.5)
}

// waitAcked waits up to two minutes until the gateway has acknowledged
// count notifications.
func (g *gateway) waitAcked(ctx context.Context, count int64) bool {
	for range 1200 {
		if g.metric("alipay_gateway_notifications_total") >= count {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// memory samples the gateway's RSS, heap in use and goroutines.
func (g *gateway) memory() memSample {
	code, body, err := get(g.url("/metrics"))
	m := memSample{RSSKB: rssKB(g.pid())}
	if err == nil && code == http.StatusOK {
		m.HeapInuse, m.Goroutines = sumMetric(body, "go_memstats_heap_inuse_bytes"), sumMetric(body, "go_goroutines")
	}
	return m
}

// readyz is what /readyz answers: its body, or why there is none.
func (g *gateway) readyz() string {
	code, body, err := get(g.url("/readyz"))
	switch {
	case err != nil:
		return err.Error()
	case code != http.StatusOK:
		return fmt.Sprintf("HTTP %d %s", code, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body))
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, []byte, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, body, err
}

// rssKB is a process's resident set size in kB (0 when it is gone).
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// tail copies the last n lines of a file to w.
func tail(w io.Writer, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines[max(len(lines)-n, 0):] {
		fmt.Fprintln(w, l)
	}
}

// errInterrupted ends the soak on SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

// createEndpoint creates a webhook endpoint to url for every event type
// over the gateway's ops API, and returns its id and secret. It returns an
// error when the API does not answer 201 with them.
func (s *soak) createEndpoint(g *gateway, url string) (id int64, secret string, err error) {
	body, _ := json.Marshal(map[string]any{"url": url, "event_types": []string{}})
	req, err := http.NewRequest(http.MethodPost, g.url("/v1/endpoints"), bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+s.opsToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ep struct {
		ID     int64  `json:"id"`
		Secret string `json:"secret"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(answer, &ep) != nil || ep.Secret == "" {
		return 0, "", fmt.Errorf("POST /v1/endpoints: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(answer))
	}
	return ep.ID, ep.Secret, nil
}
