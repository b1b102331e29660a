package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// get serves GET path on h and returns the status and body.
func get(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// TestNewInternal_Routes: with InternalListener, /readyz, /metrics and the
// profiler answer on the internal handler only, /healthz on both; without
// it, the public handler serves /readyz and /metrics as before.
func TestNewInternal_Routes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg := httpapi.Config{ReadyChecks: []func(context.Context) error{db.Ready}, Metrics: metrics.New(), Logger: testkit.Logger(t)}
	internalCfg := cfg
	internalCfg.InternalListener = true
	for name, tc := range map[string]struct {
		h    http.Handler
		want map[string]int
	}{
		"Public": {httpapi.New(cfg), map[string]int{
			"/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/pprof/": 404}},
		"PublicWithInternalListener": {httpapi.New(internalCfg), map[string]int{
			"/healthz": 200, "/readyz": 404, "/metrics": 404, "/debug/pprof/": 404, "/debug/pprof/heap": 404}},
		"Internal": {httpapi.NewInternal(internalCfg), map[string]int{
			"/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/pprof/": 200, "/debug/pprof/heap": 200,
			"/v1/notifications": 404, "/alipay/notify": 404}},
	} {
		t.Run(name, func(t *testing.T) {
			for path, want := range tc.want {
				code, body := get(tc.h, path)
				if code != want {
					t.Errorf("GET %s: %d; want %d", path, code, want)
				}
				if path == "/metrics" && code == 200 && !strings.Contains(body, "alipay_gateway_") {
					t.Errorf("GET /metrics: no alipay_gateway_ series in %.200q", body)
				}
			}
		})
	}
}

// TestNewInternal_Ready: /readyz's 503 says only "not ready"; the reason
// goes to the log, once for many probes.
func TestNewInternal_Ready(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var reason atomic.Pointer[string]
	check := func(context.Context) error {
		if r := reason.Load(); r != nil {
			return errors.New(*r)
		}
		return nil
	}
	var logs bytes.Buffer
	h := httpapi.NewInternal(httpapi.Config{Logger: zerolog.New(&logs), ReadyChecks: []func(context.Context) error{db.Ready, check}})

	t.Run("OK", func(t *testing.T) {
		if code, body := get(h, "/readyz"); code != 200 || body != "ready\n" {
			t.Fatalf("got %d %q; want 200 ready", code, body)
		}
	})
	t.Run("ErrNotReady", func(t *testing.T) {
		r := "WebSocket channel of app 2021000000000002 is not connected: dial tcp 10.0.0.1:443: i/o timeout"
		reason.Store(&r)
		for range 10 {
			if code, body := get(h, "/readyz"); code != 503 || body != "not ready\n" {
				t.Fatalf("got %d %q; want 503 %q", code, body, "not ready\n")
			}
		}
		if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "i/o timeout") {
			t.Fatalf("%d log lines for 10 probes, want 1 with the reason: %s", n, logs.String())
		}
	})
}
