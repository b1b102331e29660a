// Package httpapi is the gateway's HTTP surface: Alipay's notification
// endpoint, the health probes, and the ops REST API (/v1) behind bearer
// tokens. Handlers decode, call the verifier and the store, and answer
// through the small helpers of reply.go, where errors meet HTTP statuses.
package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
)

// Config is what the HTTP layer needs.
type Config struct {
	Verifier *alipay.Verifier
	// Inbox stores and applies notifications; usually the DB itself.
	Inbox notify.Inbox
	// Arrivals, when set, is told of each notification while it is read
	// and verified (the group-commit Batcher, so that a batch waits only
	// for notifications that are coming).
	Arrivals notify.Arrivals
	// DB serves the ops API and the readiness probe.
	DB     *postgres.DB
	Logger zerolog.Logger
	// MaxBodyBytes caps a notification body; larger ones get 413.
	MaxBodyBytes int64
	// Tokens are the ops API's bearer tokens.
	Tokens []string
	// IngestTimeout bounds the store's work for one notification.
	IngestTimeout time.Duration
	// Metrics receives the intake's counts; nil reports nothing.
	Metrics *metrics.Metrics
	// ReadyChecks are readiness conditions besides the database (a
	// WebSocket channel being connected); each returns why it is not ready.
	ReadyChecks []func(context.Context) error
	// Outbound calls Alipay's OpenAPI; nil leaves its endpoints out.
	Outbound *outbound.Service
	// CallbackClientLimit and CallbackGlobalLimit rate-limit the
	// authorization callback per client and from all clients, in this
	// process; the defaults (10 a minute per client, 5 at once; 60 a minute
	// in all, 20 at once) when zero.
	CallbackClientLimit RateLimit
	CallbackGlobalLimit RateLimit
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client, for the callback's limit (TRUSTED_PROXIES); with none the
	// connection's address is the client.
	TrustedProxies []netip.Prefix
	// Now is the clock of the callback's limit; time.Now when nil.
	Now func() time.Time
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	outage  zerolog.Logger // for refusals while the database is unavailable
	limited zerolog.Logger // for the callback's rate-limited requests
	// callbacks limits the authorization callback.
	callbacks *limiter
}

// New returns the gateway's HTTP handler.
func New(cfg Config) http.Handler {
	if cfg.IngestTimeout == 0 {
		cfg.IngestTimeout = 15 * time.Second
	}
	if cfg.CallbackClientLimit == (RateLimit{}) {
		cfg.CallbackClientLimit = defaultCallbackClientLimit
	}
	if cfg.CallbackGlobalLimit == (RateLimit{}) {
		cfg.CallbackGlobalLimit = defaultCallbackGlobalLimit
	}
	s := &Server{cfg: cfg, log: cfg.Logger, outage: notify.OutageLogger(cfg.Logger),
		limited:   cfg.Logger.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second}),
		callbacks: newLimiter(cfg.CallbackClientLimit, cfg.CallbackGlobalLimit, maxLimitedClients, cfg.Now)}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", s.handleHealth)
	r.Get("/readyz", s.handleReady)
	r.Post("/alipay/notify", s.handleNotify)
	if cfg.Metrics != nil {
		r.Handle("/metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	if cfg.Outbound != nil {
		r.Get("/alipay/auth/callback", s.handleAuthCallback)
	}
	r.Route("/v1", s.routesV1)
	return r
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := append([]func(context.Context) error{s.cfg.DB.Ready}, s.cfg.ReadyChecks...)
	for _, check := range checks {
		if err := check(ctx); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ready\n"))
}
