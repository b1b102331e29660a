package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// opsCall is one call to the fake ops API.
type opsCall struct {
	method, path, auth string
	body               map[string]any
}

// fakeOps is the gateway's ops API for endpoints: it answers a create with
// createStatus and createBody, and a delete with deleteStatus.
type fakeOps struct {
	*httptest.Server
	createStatus int
	createBody   string
	deleteStatus int

	mu    sync.Mutex
	calls []opsCall
}

func newFakeOps(t *testing.T, createStatus int, createBody string, deleteStatus int) *fakeOps {
	t.Helper()
	f := &fakeOps{createStatus: createStatus, createBody: createBody, deleteStatus: deleteStatus}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := opsCall{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization")}
		if data, _ := io.ReadAll(r.Body); len(data) > 0 {
			if err := json.Unmarshal(data, &c.body); err != nil {
				t.Errorf("%s %s: body %q: %v", r.Method, r.URL.Path, data, err)
			}
		}
		f.mu.Lock()
		f.calls = append(f.calls, c)
		f.mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/endpoints":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.createStatus)
			io.WriteString(w, f.createBody)
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/endpoints/"):
			w.WriteHeader(f.deleteStatus)
			if f.deleteStatus >= 400 {
				io.WriteString(w, `{"error":{"code":"internal","message":"database unavailable"}}`)
			}
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOps) Calls() []opsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]opsCall(nil), f.calls...)
}

// created is a 201 answer for endpoint 7 with secret.
func created(secret string, eventTypes ...string) string {
	if eventTypes == nil {
		eventTypes = []string{}
	}
	data, _ := json.Marshal(map[string]any{
		"id": 7, "url": "http://127.0.0.1:1/", "event_types": eventTypes, "app_id": "", "description": listenDescription,
		"enabled": true, "secret": secret, "created_at": "2026-12-01T10:00:00Z",
	})
	return string(data)
}

// running is a listen command started by startListen.
type running struct {
	url            string
	stdout, stderr *testkit.LogBuffer // safe for the listener's goroutines
	stop           func() error
}

// startListen runs listen with args until stop, which returns its error.
func startListen(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &testkit.LogBuffer{}, stderr: &testkit.LogBuffer{}}
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- listen(ctx, args, r.stdout, r.stderr, func(url string) { urls <- url }) }()
	select {
	case r.url = <-urls:
	case err := <-done:
		cancel()
		t.Fatalf("listen ended before serving: %v\nstdout: %s", err, r.stdout)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("listen did not start")
	}
	var once sync.Once
	var err error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// eventBody is an event as the gateway sends it.
func eventBody(id string) []byte {
	return []byte(`{"id":"` + id + `","type":"authorization.granted","timestamp":"2026-12-01T10:00:00.123Z","app_id":"2021000000000001","notify_id":"2026120100222000000000000042","occurred_at":"2026-12-01T09:59:59Z","data":{"user_id":"2088000000000001"}}`)
}

// post sends body to url with the webhook headers of id signed by keys at
// ts, and returns the status and answer.
func post(t *testing.T, url, id string, ts time.Time, body []byte, keys ...[]byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	stdwebhook.SetHeaders(req.Header, id, ts, body, keys...)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func newKey(t *testing.T) (string, []byte) {
	t.Helper()
	s, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	key, err := stdwebhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// lineWith returns the one line of out that holds all of parts, or fails.
func lineWith(t *testing.T, out string, parts ...string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Errorf("%d lines hold %q, want 1:\n%s", len(found), parts, out)
		return ""
	}
	return found[0]
}

func TestListen_Register(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		secret, key := newKey(t)
		ops := newFakeOps(t, http.StatusCreated, created(secret, "authorization.granted", "mini_app.audit.rejected"), http.StatusNoContent)
		l := startListen(t, "--gateway", ops.URL+"/", "--token", "tok-1", "--events", "authorization.granted, mini_app.audit.rejected", "--app-id", testkit.AppID)

		calls := ops.Calls()
		if len(calls) != 1 {
			t.Fatalf("calls before any event: %+v", calls)
		}
		c := calls[0]
		types, _ := c.body["event_types"].([]any)
		if c.auth != "Bearer tok-1" || c.body["url"] != l.url || len(types) != 2 || types[0] != "authorization.granted" || types[1] != "mini_app.audit.rejected" ||
			c.body["app_id"] != testkit.AppID || c.body["description"] != "alipayctl listen" {
			t.Errorf("create: %+v (listener %s)", c, l.url)
		}

		now := time.Now()
		if code, answer := post(t, l.url, "evt_42", now, eventBody("evt_42"), key); code != http.StatusNoContent {
			t.Errorf("good event: HTTP %d %s", code, answer)
		}
		_, other := newKey(t)
		if code, answer := post(t, l.url, "evt_43", now, eventBody("evt_43"), other); code != http.StatusBadRequest || !strings.Contains(answer, "no matching signature") {
			t.Errorf("bad signature: HTTP %d %s", code, answer)
		}
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}

		calls = ops.Calls()
		if len(calls) != 2 || calls[1].method != http.MethodDelete || calls[1].path != "/v1/endpoints/7" || calls[1].auth != "Bearer tok-1" {
			t.Errorf("calls: %+v", calls)
		}
		out := l.stdout.String()
		lineWith(t, out, "listening on "+l.url)
		lineWith(t, out, "registered endpoint 7", "authorization.granted,mini_app.audit.rejected", secret)
		lineWith(t, out, "evt_42", "authorization.granted", "app_id=2021000000000001", "notify_id=2026120100222000000000000042", "204")
		if line := lineWith(t, out, "evt_43"); !strings.Contains(line, "BAD SIGNATURE") || !strings.Contains(line, "400") {
			t.Errorf("bad signature line: %s", line)
		}
		if strings.Contains(out, "user_id") {
			t.Errorf("the body is printed without --print-json:\n%s", out)
		}
		lineWith(t, out, "deleted endpoint 7")
		if l.stderr.String() != "" {
			t.Errorf("stderr: %s", l.stderr)
		}
	})
	t.Run("OKAllEvents", func(t *testing.T) {
		t.Parallel()
		secret, _ := newKey(t)
		ops := newFakeOps(t, http.StatusCreated, created(secret), http.StatusNoContent)
		l := startListen(t, "--gateway", ops.URL, "--token", "tok-1", "--url", "http://dev.example:9000/hooks")
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
		c := ops.Calls()[0]
		types, ok := c.body["event_types"].([]any)
		if _, hasApp := c.body["app_id"]; !ok || len(types) != 0 || hasApp || c.body["url"] != "http://dev.example:9000/hooks" {
			t.Errorf("create: %+v", c.body)
		}
		lineWith(t, l.stdout.String(), "registered endpoint 7", "all events")
	})
	t.Run("OKAlreadyDeleted", func(t *testing.T) {
		t.Parallel()
		secret, _ := newKey(t)
		ops := newFakeOps(t, http.StatusCreated, created(secret), http.StatusNotFound)
		l := startListen(t, "--gateway", ops.URL, "--token", "tok-1")
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrAPI", func(t *testing.T) {
		t.Parallel()
		ops := newFakeOps(t, http.StatusUnauthorized, `{"error":{"code":"unauthorized","message":"unknown bearer token"}}`, http.StatusNoContent)
		code, _, errOut := ctl(t, "listen", "--gateway", ops.URL, "--token", "nope")
		oneLine(t, errOut)
		if code != 1 || !strings.Contains(errOut, "HTTP 401: unknown bearer token (unauthorized)") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		if calls := ops.Calls(); len(calls) != 1 {
			t.Errorf("calls: %+v", calls)
		}
	})
	t.Run("ErrAPINotJSON", func(t *testing.T) {
		t.Parallel()
		ops := newFakeOps(t, http.StatusBadGateway, "<html>\n<h1>502 Bad Gateway</h1>\n</html>", http.StatusNoContent)
		code, _, errOut := ctl(t, "listen", "--gateway", ops.URL, "--token", "tok-1")
		oneLine(t, errOut)
		if code != 1 || !strings.Contains(errOut, "HTTP 502: <html> <h1>502 Bad Gateway</h1> </html>") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("ErrNoSecretInAnswer", func(t *testing.T) {
		t.Parallel()
		ops := newFakeOps(t, http.StatusCreated, `{"id":7,"url":"http://x/"}`, http.StatusNoContent)
		code, _, errOut := ctl(t, "listen", "--gateway", ops.URL, "--token", "tok-1")
		oneLine(t, errOut)
		if code != 1 || !strings.Contains(errOut, "no endpoint id or secret") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("ErrDelete", func(t *testing.T) {
		t.Parallel()
		secret, _ := newKey(t)
		ops := newFakeOps(t, http.StatusCreated, created(secret), http.StatusInternalServerError)
		l := startListen(t, "--gateway", ops.URL, "--token", "tok-1")
		err := l.stop()
		if err == nil || !strings.Contains(err.Error(), "deleting endpoint 7 (delete it yourself): HTTP 500: database unavailable (internal)") {
			t.Errorf("got %v", err)
		}
		if strings.Contains(l.stdout.String(), "deleted endpoint") {
			t.Errorf("stdout: %s", l.stdout)
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		t.Parallel()
		ops := newFakeOps(t, http.StatusCreated, "{}", http.StatusNoContent)
		code, _, errOut := ctl(t, "listen", "--gateway", ops.URL, "--token", "")
		// OPS_API_TOKEN may be set where the tests run: then it registers,
		// and the fake's empty answer fails it.
		oneLine(t, errOut)
		if code == 0 {
			t.Errorf("exit 0: %s", errOut)
		}
	})
}

func TestListen_Secret(t *testing.T) {
	t.Parallel()
	// An ops API that must not be called.
	ops := newFakeOps(t, http.StatusInternalServerError, "{}", http.StatusInternalServerError)
	secret, key := newKey(t)
	l := startListen(t, "--secret", secret, "--gateway", ops.URL, "--print-json")
	now := time.Now()
	_, other := newKey(t)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		if code, answer := post(t, l.url, "evt_1", now, eventBody("evt_1"), other, key); code != http.StatusNoContent {
			t.Errorf("HTTP %d %s", code, answer)
		}
	})
	t.Run("OKIDMismatch", func(t *testing.T) {
		t.Parallel()
		if code, answer := post(t, l.url, "evt_2", now, eventBody("evt_two"), key); code != http.StatusNoContent {
			t.Errorf("HTTP %d %s", code, answer)
		}
	})
	t.Run("ErrBadSignature", func(t *testing.T) {
		t.Parallel()
		if code, answer := post(t, l.url, "evt_3", now, eventBody("evt_3"), other); code != http.StatusBadRequest {
			t.Errorf("HTTP %d %s", code, answer)
		}
	})
	t.Run("ErrTooOld", func(t *testing.T) {
		t.Parallel()
		if code, answer := post(t, l.url, "evt_4", now.Add(-10*time.Minute), eventBody("evt_4"), key); code != http.StatusBadRequest || !strings.Contains(answer, "too old") {
			t.Errorf("HTTP %d %s", code, answer)
		}
	})
	t.Run("ErrUnsigned", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Post(l.url, "application/json", bytes.NewReader(eventBody("evt_5")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("HTTP %d", resp.StatusCode)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		t.Parallel()
		body := bytes.Repeat([]byte("x"), maxEventBytes+1)
		if code, _ := post(t, l.url, "evt_6", now, body, key); code != http.StatusRequestEntityTooLarge {
			t.Errorf("HTTP %d", code)
		}
	})
	t.Run("ErrMethod", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Get(l.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("HTTP %d", resp.StatusCode)
		}
	})
	t.Cleanup(func() {
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
		if calls := ops.Calls(); len(calls) != 0 {
			t.Errorf("--secret called the ops API: %+v", calls)
		}
		out := l.stdout.String()
		lineWith(t, out, "verifying with --secret")
		lineWith(t, out, "evt_1", "authorization.granted", "notify_id=2026120100222000000000000042", "204")
		// --print-json: the body, indented.
		if !strings.Contains(out, "\n  \"data\": {\n    \"user_id\": \"2088000000000001\"\n  }\n") {
			t.Errorf("no indented body:\n%s", out)
		}
		lineWith(t, out, "evt_2", `body id "evt_two" is not the webhook-id`)
		lineWith(t, out, "BAD SIGNATURE", "evt_3", "no matching signature", "400")
		lineWith(t, out, "BAD SIGNATURE", "evt_4", "too old", "400")
		lineWith(t, out, "BAD SIGNATURE", "(no webhook-id)", "missing", "400")
		lineWith(t, out, "evt_6", "413")
		for _, id := range []string{"evt_3", "evt_4", "evt_6"} {
			if strings.Contains(out, `"id": "`+id+`"`) {
				t.Errorf("a refused event's body is printed: %s", id)
			}
		}
	})
}

func TestListen_ForwardTo(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		secret, key := newKey(t)
		var mu sync.Mutex
		var got http.Header
		var gotBody []byte
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			got, gotBody = r.Header.Clone(), nil
			gotBody, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusAccepted)
		}))
		defer app.Close()
		l := startListen(t, "--secret", secret, "--forward-to", app.URL+"/webhooks")
		now := time.Now()
		body := eventBody("evt_42")
		if code, answer := post(t, l.url, "evt_42", now, body, key); code != http.StatusNoContent {
			t.Errorf("HTTP %d %s", code, answer)
		}
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		// The app verifies it as the listener did.
		if err := stdwebhook.Verify(got, gotBody, now, key); err != nil || got.Get("Content-Type") != "application/json" {
			t.Errorf("forwarded: %v, headers %v", err, got)
		}
		lineWith(t, l.stdout.String(), "forwarded to "+app.URL+"/webhooks: HTTP 202")
	})
	t.Run("ErrAppDown", func(t *testing.T) {
		t.Parallel()
		secret, key := newKey(t)
		l := startListen(t, "--secret", secret, "--forward-to", "http://127.0.0.1:1/")
		if code, answer := post(t, l.url, "evt_42", time.Now(), eventBody("evt_42"), key); code != http.StatusNoContent {
			t.Errorf("HTTP %d %s", code, answer)
		}
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
		lineWith(t, l.stdout.String(), "forward to http://127.0.0.1:1/", "refused")
	})
}
