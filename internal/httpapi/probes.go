package httpapi

import (
	"context"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// readyLogEvery is the least time between two readiness log lines.
const readyLogEvery = time.Minute

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReady answers 200 ready or 503 not ready. Why it is not ready goes
// to the log, not to the prober.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var reason string
	for _, check := range s.cfg.ReadyChecks {
		if err := check(ctx); err != nil {
			reason = err.Error()
			break
		}
	}
	s.ready.report(reason, time.Now())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// readyLog logs the readiness probe's answers without flooding the log: a
// line when the answer changes (a new reason, or ready again), at most one
// every readyLogEvery. A change within that time is logged by the first
// probe after it, if it still holds.
type readyLog struct {
	log    zerolog.Logger
	mu     sync.Mutex
	logged string    // the last answer logged: a reason, "" for ready
	at     time.Time // when it was logged
}

// report logs reason ("" for ready) if it is to be logged at now.
func (l *readyLog) report(reason string, now time.Time) {
	if !l.changed(reason, now) {
		return
	}
	if reason == "" {
		l.log.Info().Msg("ready")
		return
	}
	l.log.Warn().Str("reason", reason).Msg("not ready")
}

// changed reports whether reason differs from the answer last logged and
// readyLogEvery has passed since, and if so records it as logged at now.
func (l *readyLog) changed(reason string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if reason == l.logged || now.Sub(l.at) < readyLogEvery {
		return false
	}
	l.logged, l.at = reason, now
	return true
}

// Pprof returns net/http/pprof's handlers at /debug/pprof/: the index and
// the named profiles, the CPU profile and the execution trace.
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
