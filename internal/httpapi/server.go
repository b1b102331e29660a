// Package httpapi is the gateway's HTTP surface: Alipay's notification
// endpoint (a thin adapter over the intake pipeline: body in, success or
// fail out), the merchant authorization callback, the health probes, the
// ops REST API (/v1) behind bearer tokens, /metrics and the profiler. New is
// the public handler (HTTP_ADDR), which also mounts the ops console
// (internal/console, under /console); NewInternal the internal listener's
// (INTERNAL_ADDR). Handlers decode, call the pipeline, the store or the
// outbound service through small interfaces, and answer through the helpers
// of reply.go, where errors meet HTTP statuses.
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
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Config is what the HTTP layer needs.
type Config struct {
	// Verifier reads and verifies POST /alipay/notify.
	Verifier *alipay.Verifier
	// Intake takes each verified notification: decides, stores and
	// applies it, and has it answered, counted and logged.
	Intake *intake.Pipeline
	// Store serves the ops API's reads.
	Store Store
	// Reprocessor decides and applies again a failed or unhandled
	// notification (POST /v1/notifications/{id}/reprocess).
	Reprocessor Reprocessor
	Logger      zerolog.Logger
	// MaxBodyBytes caps a notification body; larger ones get 413.
	MaxBodyBytes int64
	// Tokens are the ops API's bearer tokens.
	Tokens []string
	// Metrics is served at /metrics; nil serves none.
	Metrics *metrics.Metrics
	// ReadyChecks are the readiness conditions (the database answers and
	// is migrated, each WebSocket channel is connected); each returns why
	// it is not ready.
	ReadyChecks []func(context.Context) error
	// Outbound calls Alipay's OpenAPI; nil leaves its endpoints out.
	Outbound *outbound.Service
	// Webhooks manages the event endpoints and serves the feed; nil
	// leaves their routes out.
	Webhooks Webhooks
	// Batches creates and steers bulk template message batches; nil
	// leaves their routes out. BatchMaxBytes caps an upload
	// (DefaultBatchMaxBytes when 0).
	Batches       Batches
	BatchMaxBytes int64
	// Reconcile starts and reads reconciliation runs and their drift; nil
	// leaves their routes out.
	Reconcile Reconcile
	// Console is the ops console (internal/console), served under
	// /console; nil leaves it out.
	Console http.Handler
	// InternalListener leaves /readyz and /metrics out of the public
	// handler, for NewInternal's handler on its own listener to serve.
	InternalListener bool
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

// Store is what the ops API reads (postgres.DB). Each method returns an
// ENOTFOUND *notify.Error for an unknown id, an EINVALID one for a cursor
// it did not make, and an EUNAVAILABLE one when the database cannot be
// reached.
type Store interface {
	Notifications(ctx context.Context, f view.NotificationFilter) ([]*view.StoredNotification, string, error)
	Notification(ctx context.Context, appID, notifyID string) (*view.StoredNotification, error)
	Authorizations(ctx context.Context, f view.AuthorizationFilter) ([]*view.Authorization, string, error)
	Authorization(ctx context.Context, appID, authAppID string) (*view.Authorization, error)
	MiniApp(ctx context.Context, miniAppID string) (*view.MiniApp, error)
	AuditHistory(ctx context.Context, miniAppID string) ([]view.AuditEntry, error)
	Orders(ctx context.Context, f view.OrderFilter) ([]*view.MiniAppOrder, string, error)
	Order(ctx context.Context, orderNo string) (*view.MiniAppOrder, error)
}

// Reprocessor decides and applies again a stored notification that ended
// failed or unhandled (intake.Pipeline.Reprocess).
type Reprocessor interface {
	Reprocess(ctx context.Context, appID, notifyID string) (*view.StoredNotification, error)
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	ready   *readyLog
	limited zerolog.Logger // for the callback's rate-limited requests
	// callbacks limits the authorization callback.
	callbacks *limiter
}

func newServer(cfg Config) *Server {
	if cfg.CallbackClientLimit == (RateLimit{}) {
		cfg.CallbackClientLimit = defaultCallbackClientLimit
	}
	if cfg.CallbackGlobalLimit == (RateLimit{}) {
		cfg.CallbackGlobalLimit = defaultCallbackGlobalLimit
	}
	return &Server{cfg: cfg, log: cfg.Logger, ready: &readyLog{log: cfg.Logger},
		limited:   cfg.Logger.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second}),
		callbacks: newLimiter(cfg.CallbackClientLimit, cfg.CallbackGlobalLimit, maxLimitedClients, cfg.Now)}
}

// New returns the public handler: Alipay's endpoints, the ops API and
// /healthz, and /readyz and /metrics unless cfg.InternalListener.
func New(cfg Config) http.Handler {
	s := newServer(cfg)
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", s.handleHealth)
	if !cfg.InternalListener {
		s.routeReadyAndMetrics(r)
	}
	r.Post("/alipay/notify", s.handleNotify)
	if cfg.Outbound != nil {
		r.Get("/alipay/auth/callback", s.handleAuthCallback)
	}
	r.Route("/v1", s.routesV1)
	if cfg.Console != nil {
		r.Mount("/console", cfg.Console)
	}
	return r
}

// NewInternal returns the internal listener's handler: /healthz, /readyz,
// /metrics and net/http/pprof under /debug/pprof/.
func NewInternal(cfg Config) http.Handler {
	s := newServer(cfg)
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Get("/healthz", s.handleHealth)
	s.routeReadyAndMetrics(r)
	r.Mount("/debug/pprof", Pprof())
	return r
}

func (s *Server) routeReadyAndMetrics(r chi.Router) {
	r.Get("/readyz", s.handleReady)
	if s.cfg.Metrics != nil {
		r.Handle("/metrics", promhttp.HandlerFor(s.cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	}
}
