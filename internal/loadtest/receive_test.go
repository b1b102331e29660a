package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// delivery is a request as the dispatcher sends one: event id's body,
// signed with secret.
func delivery(t *testing.T, url, id, body, secret string) *http.Request {
	t.Helper()
	key, err := stdwebhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	stdwebhook.SetHeaders(req.Header, id, time.Now(), []byte(body), key)
	return req
}

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// send serves req with rc and returns the status.
func send(rc http.Handler, req *http.Request) int {
	w := httptest.NewRecorder()
	rc.ServeHTTP(w, req)
	return w.Code
}

func TestReceiver_ServeHTTP(t *testing.T) {
	t.Parallel()
	secretA, secretB := newSecret(t), newSecret(t)
	body := func(id string) string { return `{"id":"` + id + `","type":"notification.received","data":{}}` }

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		rc, err := NewReceiver(Faults{}, secretA, secretB)
		if err != nil {
			t.Fatal(err)
		}
		rc.Reset(2)
		for _, d := range []struct{ id, secret string }{{"evt_1", secretA}, {"evt_2", secretB}, {"evt_1", secretA}} {
			if code := send(rc, delivery(t, "/hook", d.id, body(d.id), d.secret)); code != http.StatusNoContent {
				t.Fatalf("%s: status %d, want 204", d.id, code)
			}
		}
		select {
		case <-rc.Done():
		default:
			t.Error("Done not closed after the 2 expected")
		}
		st := rc.Stats()
		if st.Distinct != 2 || st.Deliveries != 3 || st.Rejected != 0 || st.Differing != 0 || st.DoneAt == nil || st.PerSecond <= 0 || st.FirstS == nil {
			t.Errorf("stats %+v", st)
		}
		if got := rc.Received(); len(got) != 2 || got["evt_1"] != 2 || got["evt_2"] != 1 {
			t.Errorf("Received() = %v", got)
		}
		rc.Reset(0)
		if st := rc.Stats(); st.Distinct != 0 || st.Deliveries != 0 || st.DoneAt != nil {
			t.Errorf("after Reset: %+v", st)
		}
	})
	t.Run("ErrDiffering", func(t *testing.T) {
		t.Parallel()
		rc, _ := NewReceiver(Faults{}, secretA)
		send(rc, delivery(t, "/", "evt_1", body("evt_1"), secretA))
		if code := send(rc, delivery(t, "/", "evt_1", `{"id":"evt_1","type":"other"}`, secretA)); code != http.StatusNoContent {
			t.Fatalf("status %d", code)
		}
		if st := rc.Stats(); st.Distinct != 1 || st.Deliveries != 2 || st.Differing != 1 {
			t.Errorf("stats %+v, want a differing duplicate", st)
		}
	})
	for name, req := range map[string]func() *http.Request{
		"ErrWrongSecret": func() *http.Request { return delivery(t, "/", "evt_1", body("evt_1"), newSecret(t)) },
		"ErrUnsigned": func() *http.Request {
			r := delivery(t, "/", "evt_1", body("evt_1"), secretA)
			r.Header.Del(stdwebhook.HeaderSignature)
			return r
		},
		"ErrIDNotWebhookID": func() *http.Request { return delivery(t, "/", "evt_1", body("evt_2"), secretA) },
		"ErrNotJSON":        func() *http.Request { return delivery(t, "/", "evt_1", "evt_1", secretA) },
		"ErrGet":            func() *http.Request { r, _ := http.NewRequest(http.MethodGet, "/", nil); return r },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rc, _ := NewReceiver(Faults{}, secretA)
			if code := send(rc, req()); code/100 != 4 {
				t.Errorf("status %d, want 4xx", code)
			}
			if st := rc.Stats(); st.Rejected != 1 || st.Deliveries != 0 || st.Distinct != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	t.Run("ErrFail", func(t *testing.T) {
		t.Parallel()
		rc, _ := NewReceiver(Faults{FailRate: 1}, secretA)
		if code := send(rc, delivery(t, "/", "evt_1", body("evt_1"), secretA)); code != http.StatusInternalServerError {
			t.Errorf("status %d, want 500", code)
		}
		if st := rc.Stats(); st.Failed != 1 || st.Deliveries != 0 {
			t.Errorf("stats %+v", st)
		}
		rc.SetFaults(Faults{})
		if code := send(rc, delivery(t, "/", "evt_1", body("evt_1"), secretA)); code != http.StatusNoContent {
			t.Errorf("without faults: status %d", code)
		}
	})
	t.Run("ErrSlow", func(t *testing.T) {
		t.Parallel()
		rc, _ := NewReceiver(Faults{SlowRate: 1, Slow: 50 * time.Millisecond}, secretA)
		t0 := time.Now()
		if code := send(rc, delivery(t, "/", "evt_1", body("evt_1"), secretA)); code != http.StatusNoContent {
			t.Errorf("status %d, want 204", code)
		}
		if d := time.Since(t0); d < 50*time.Millisecond {
			t.Errorf("answered after %s, want 50ms", d)
		}
		if st := rc.Stats(); st.Slow != 1 || st.Deliveries != 1 || st.InFlight != 0 {
			t.Errorf("stats %+v: a slow answer is counted", st)
		}
	})
}

func TestNewReceiver(t *testing.T) {
	t.Parallel()
	t.Run("ErrBadSecret", func(t *testing.T) {
		t.Parallel()
		if _, err := NewReceiver(Faults{}, "whsec_!!"); !errors.Is(err, stdwebhook.ErrBadSecret) {
			t.Errorf("err = %v, want ErrBadSecret", err)
		}
	})
}

func TestReceiver_Start(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	rc, _ := NewReceiver(Faults{}, secret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := rc.Start(addr); err != nil {
		t.Fatal(err)
	}
	defer rc.Stop()
	post := func() (int, error) {
		resp, err := http.DefaultClient.Do(delivery(t, "http://"+addr+"/hook", "evt_1", `{"id":"evt_1"}`, secret))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	t.Run("OK", func(t *testing.T) {
		if code, err := post(); err != nil || code != http.StatusNoContent {
			t.Fatalf("status %d, %v", code, err)
		}
	})
	t.Run("ErrStopped", func(t *testing.T) {
		rc.Stop()
		if _, err := post(); err == nil {
			t.Fatal("a stopped receiver answered")
		}
		if err := rc.Start(addr); err != nil {
			t.Fatal(err)
		}
		if code, err := post(); err != nil || code != http.StatusNoContent {
			t.Fatalf("after Start again: status %d, %v", code, err)
		}
		if st := rc.Stats(); st.Deliveries != 2 || st.Distinct != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestReceiver_Control(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	rc, _ := NewReceiver(Faults{}, secret)
	meter, err := NewCPUMeter("/proc", map[string]int{})
	if err != nil {
		t.Skip("no /proc:", err)
	}
	srv := httptest.NewServer(rc.Control(meter))
	defer srv.Close()
	stats := func(method, path string) controlStats {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st controlStats
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: status %d", method, path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	t.Run("OK", func(t *testing.T) {
		if st := stats("POST", ControlPrefix+"reset?expect=1"); st.Distinct != 0 || st.CPU != nil {
			t.Fatalf("after reset: %+v", st)
		}
		resp, err := http.DefaultClient.Do(delivery(t, srv.URL+"/hook", "evt_9", `{"id":"evt_9"}`, secret))
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delivery: %v %v", resp, err)
		}
		resp.Body.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			st := stats("GET", ControlPrefix+"stats")
			if st.CPU != nil {
				if st.Distinct != 1 || st.DoneAt == nil || st.Seconds <= 0 {
					t.Errorf("stats %+v", st)
				}
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal("no CPU figure once the expected event arrived")
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	t.Run("ErrExpect", func(t *testing.T) {
		resp, err := http.Post(srv.URL+ControlPrefix+"reset?expect=x", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
}
