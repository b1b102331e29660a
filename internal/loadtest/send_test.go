package loadtest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestClient_Post(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded; charset=utf-8" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch string(body) {
		case "ok":
			io.WriteString(w, "success")
		case "chunked":
			io.WriteString(w, "succ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "ess")
		case "close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "success")
		case "unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "fail")
		case "long":
			io.WriteString(w, strings.Repeat("x", 10000))
		default:
			io.WriteString(w, "fail")
		}
	}))
	defer srv.Close()
	cl, err := NewClient(srv.URL+"/alipay/notify", 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := cl.conns[0]
	for _, tc := range []struct{ body, want string }{
		{"ok", OutcomeSuccess},
		{"ok", OutcomeSuccess},
		{"chunked", OutcomeSuccess},
		{"other", `200 "fail"`},
		{"unavailable", "503"},
		{"long", `200 "` + strings.Repeat("x", 64) + `"`},
		{"close", OutcomeSuccess},
		{"ok", OutcomeSuccess}, // dialled again
	} {
		if got := cl.post(context.Background(), w, []byte(tc.body)); got != tc.want {
			t.Errorf("post(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}

	t.Run("ErrConn", func(t *testing.T) {
		srv.Close()
		if got := cl.post(context.Background(), w, []byte("ok")); got != OutcomeConnErr {
			t.Errorf("post to a closed server = %q, want %q", got, OutcomeConnErr)
		}
	})
}

func TestNewClient(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"https://example.com/x", "127.0.0.1:80/x", "http:///x"} {
		if _, err := NewClient(u, 1, time.Second); err == nil {
			t.Errorf("NewClient(%q) = nil error", u)
		}
	}
}
