// Package console is the gateway's ops console: server-rendered pages under
// /console for an ISV's operators (the state of every merchant and
// mini-app, what intake did, why a notification failed or would not
// verify, where the webhooks stand), in Chinese and English. It is HTML
// from html/template, embedded in the binary with its stylesheet; no
// script at all (every action is a form), so it works offline and under a
// strict Content-Security-Policy.
//
// It reads through the same store methods as the ops API (postgres.DB),
// reprocesses through the intake pipeline, diagnoses pasted bodies with
// internal/diagnose (what alipayctl verify runs) against the gateway's
// configured keys, manages webhook deliveries through webhook.Admin,
// steers template message batches through batchsend.Admin, and starts and
// reads reconciliation runs through reconcile.Reconciler. It
// never shows a merchant's token, a webhook secret or a key: the views it
// reads hold none.
//
// # Sessions
//
// An operator signs in with one of the ops API tokens (OPS_API_TOKENS) and
// gets a session cookie: HttpOnly, SameSite=Strict, Path=/console, and
// Secure when the request came over TLS (r.TLS is set, or a proxy of
// TRUSTED_PROXIES said X-Forwarded-Proto: https). Sessions live in Postgres
// under the SHA-256 of their id, so every replica knows them and signing
// out ends one everywhere; they expire after CONSOLE_SESSION_TTL, and end
// when the token they were opened with is no longer configured. Every
// state-changing form carries the session's CSRF token (a synchronizer
// token stored with the session); the sign-in form a token of its own (a
// cookie it must match). A request without a session is sent to sign in
// (GET) or refused with 401 (anything else); a form without the right
// CSRF token is refused with 403.
//
// # Adding a page
//
// A page is one handler file, one template and one entry in pages (below):
//
//   - page_<name>.go: a method func (c *Console) <name>Routes(r chi.Router)
//     that mounts its handlers (relative to the page's path), each of
//     which ends with c.render(w, r, "<name>", title, data) or c.fail;
//     state-changing handlers are POSTs (the CSRF check is already in
//     front of them) that redirect when done (c.done);
//   - templates/<name>.html: {{define "content"}}...{{end}}, with every
//     string through {{$.T "key"}} and its keys in messages.go (a test
//     checks that each key used exists in both languages);
//   - an entry in pages: its name (the template, and the nav label
//     "nav.<name>"), its path, its routes, and when its dependency is
//     optional, when it is on.
//
// The template-message batches (issue 20) and reconciliation (issue 21)
// pages came in that way (page_batches.go, page_reconcile.go).
package console

import (
	"context"
	"embed"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Base is where the console is mounted (internal/httpapi).
const Base = "/console"

// DefaultSessionTTL is how long a session lasts when Config says nothing.
const DefaultSessionTTL = 12 * time.Hour

//go:embed templates/*.html static/*
var files embed.FS

// Config is what the console needs.
type Config struct {
	// Store reads the state and keeps the sessions (postgres.DB).
	Store Store
	// Reprocessor decides and applies again a failed or unhandled
	// notification (intake.Pipeline).
	Reprocessor Reprocessor
	// Webhooks manages the endpoints' deliveries (webhook.Admin); nil
	// leaves the forwarding page and the overview's forwarding out.
	Webhooks Webhooks
	// Reconcile starts reconciliation runs and reads them
	// (reconcile.Reconciler, what POST /v1/reconcile-runs calls); nil
	// leaves the reconciliation page and the overview's drift out.
	Reconcile Reconcile
	// Batches reads and steers the template message batches
	// (batchsend.Admin, what the ops API's batch routes call); nil leaves
	// the batches page out.
	Batches Batches
	// Verifier is the gateway's own verifier: the verify page gives its
	// verdict on a pasted body.
	Verifier *alipay.Verifier
	// Keys are, by app id, the key material each app was configured with
	// (config.Config.Keys), which the verify page diagnoses with.
	Keys map[string]diagnose.DiagnoseInput
	// Channels are the WebSocket channels (msgchannel.Manager.Clients).
	Channels []Channel
	// ReadyChecks are the gateway's readiness conditions: the overview
	// says which fail, and why (which /readyz keeps to the log).
	ReadyChecks []func(context.Context) error
	// Metrics has this replica's recent refusals (metrics.Recent); nil
	// shows none.
	Metrics *metrics.Metrics
	// Tokens are the ops API tokens one signs in with.
	Tokens []string
	// SessionTTL is how long a session lasts (DefaultSessionTTL when 0).
	SessionTTL time.Duration
	// TrustedProxies may say, with X-Forwarded-Proto, that a request came
	// over TLS (TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// Location is the time zone times are shown in (CONSOLE_TIME_ZONE);
	// UTC when nil.
	Location *time.Location
	// MaxBodyBytes caps a body pasted into the verify page (MAX_BODY_BYTES).
	MaxBodyBytes int64
	Logger       zerolog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Store is what the console reads and keeps (postgres.DB). Each method
// returns an ENOTFOUND *notify.Error for an unknown id, an EINVALID one
// for a cursor it did not make, and an EUNAVAILABLE one when the database
// cannot be reached.
type Store interface {
	Notifications(ctx context.Context, f view.NotificationFilter) ([]*view.StoredNotification, string, error)
	Notification(ctx context.Context, appID, notifyID string) (*view.StoredNotification, error)
	MiniApp(ctx context.Context, miniAppID string) (*view.MiniApp, error)
	AuditHistory(ctx context.Context, miniAppID string) ([]view.AuditEntry, error)
	IntakeCounts(ctx context.Context, until time.Time, window, bucket time.Duration) ([]view.IntakeBucket, error)
	Merchants(ctx context.Context, f view.MerchantFilter) ([]*view.Merchant, string, error)
	MiniApps(ctx context.Context, f view.MiniAppFilter) ([]*view.MiniApp, string, error)
	OrdersOf(ctx context.Context, miniAppIDs, pids []string, limit int) ([]*view.MiniAppOrder, error)
	MerchantNotifications(ctx context.Context, authAppID string, miniAppIDs, orderNos []string, limit int) ([]*view.StoredNotification, error)
	WebhookStats(ctx context.Context) (*notify.WebhookStats, error)
	ReconcileSummary(ctx context.Context, since time.Time) (*view.ReconcileSummary, error)
	BatchList(ctx context.Context, f view.BatchFilter) ([]*view.BatchProgress, string, error)

	CreateConsoleSession(ctx context.Context, idHash, tokenHash []byte, csrf string, expiresAt time.Time) error
	ConsoleSession(ctx context.Context, idHash []byte) (*view.ConsoleSession, error)
	DeleteConsoleSession(ctx context.Context, idHash []byte) error
}

// Reprocessor decides and applies again a stored notification that ended
// failed or unhandled (intake.Pipeline.Reprocess).
type Reprocessor interface {
	Reprocess(ctx context.Context, appID, notifyID string) (*view.StoredNotification, error)
}

// Webhooks reads the endpoints and their deliveries and queues deliveries
// again (webhook.Admin). Each method returns an ENOTFOUND *notify.Error for
// an unknown id and an EUNAVAILABLE one when the database cannot be
// reached.
type Webhooks interface {
	Endpoints(ctx context.Context, enabledOnly bool) ([]*notify.Endpoint, error)
	Endpoint(ctx context.Context, id int64) (*notify.Endpoint, error)
	Deliveries(ctx context.Context, f view.DeliveryFilter) ([]*view.Delivery, string, error)
	Delivery(ctx context.Context, id int64) (*view.Delivery, error)
	RetryDelivery(ctx context.Context, id int64) (*view.Delivery, error)
	ReplayEndpoint(ctx context.Context, id int64, since time.Time) (int, error)
}

// Reconcile starts reconciliation runs and reads them and the drift they
// repaired (reconcile.Reconciler). StartWithReason returns an EINVALID
// *notify.Error for a bad scope, an ENOTFOUND one for a merchant app or
// mini-app no ISV app can check, an ECONFLICT one for a cancelled
// authorization; every method an ENOTFOUND one for an unknown run, an
// EINVALID one for a cursor it did not make and an EUNAVAILABLE one when
// the database cannot be reached.
type Reconcile interface {
	// StartWithReason starts a run on demand, as POST /v1/reconcile-runs
	// does, its reason saying who asked.
	StartWithReason(ctx context.Context, scope, id, appID, reason string) (*view.ReconcileRun, error)
	Runs(ctx context.Context, f view.RunFilter) ([]*view.ReconcileRun, string, error)
	RunByID(ctx context.Context, id int64) (*view.ReconcileRun, error)
	Drift(ctx context.Context, f view.DriftFilter) ([]*view.Drift, string, error)
}

// Batches reads and steers template message batches (batchsend.Admin).
// Each method returns an ENOTFOUND *notify.Error for an unknown batch, an
// ECONFLICT one for a change its status does not allow, an EINVALID one
// for a cursor it did not make, and an EUNAVAILABLE one when the database
// cannot be reached.
type Batches interface {
	// Batch is the batch with its counts by status, rate and time left.
	Batch(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Recipients(ctx context.Context, f view.RecipientFilter) ([]*view.BatchRecipient, string, error)
	Pause(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Resume(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Cancel(ctx context.Context, id int64) (*view.TemplateBatch, error)
	// RetryUnknown makes the unknown recipients pending again: they may
	// get the message twice.
	RetryUnknown(ctx context.Context, id int64) (*view.TemplateBatch, error)
}

// Channel is one app's WebSocket channel (msgchannel.Client).
type Channel interface {
	AppID() string
	Connected() bool
	Reconnects() int64
	// Ready says why it is not connected (nil when it is).
	Ready() error
}

// Console serves the pages.
type Console struct {
	cfg   Config
	log   zerolog.Logger
	tmpl  templates
	pages []page
	// tokenHashes are the SHA-256 of cfg.Tokens.
	tokenHashes [][]byte
}

// page is one entry of the navigation and the routes behind it.
type page struct {
	name   string                     // its template, and its nav label nav.<name>
	path   string                     // under Base
	routes func(*Console, chi.Router) // mounted at path
	on     func(*Console) bool        // nil: always on
}

// pages are the console's pages, in the navigation's order.
var pages = []page{
	{name: "overview", path: "/", routes: (*Console).overviewRoutes},
	{name: "merchants", path: "/merchants", routes: (*Console).merchantRoutes},
	{name: "miniapps", path: "/mini-apps", routes: (*Console).miniAppRoutes},
	{name: "notifications", path: "/notifications", routes: (*Console).notificationRoutes},
	{name: "verify", path: "/verify", routes: (*Console).verifyRoutes},
	{name: "webhooks", path: "/webhooks", routes: (*Console).webhookRoutes, on: func(c *Console) bool { return c.cfg.Webhooks != nil }},
	{name: "batches", path: "/batches", routes: (*Console).batchRoutes, on: func(c *Console) bool { return c.cfg.Batches != nil }},
	{name: "reconciliation", path: "/reconciliation", routes: (*Console).reconcileRoutes, on: func(c *Console) bool { return c.cfg.Reconcile != nil }},
}

// New returns the console's handler, to be mounted at Base. It panics if
// its embedded templates do not parse (a build defect, caught by the
// tests).
func New(cfg Config) http.Handler {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	c := &Console{cfg: cfg, log: cfg.Logger.With().Str("component", "console").Logger(), tmpl: parseTemplates()}
	for _, t := range cfg.Tokens {
		c.tokenHashes = append(c.tokenHashes, hash(t))
	}
	for _, p := range pages {
		if p.on == nil || p.on(c) {
			c.pages = append(c.pages, p)
		}
	}
	r := chi.NewRouter()
	r.Use(secureHeaders, c.language)
	r.Handle("/static/*", http.StripPrefix(Base, staticFiles()))
	r.Get("/lang/{lang}", c.switchLanguage)
	r.Get("/login", c.loginForm)
	r.Post("/login", c.login)
	r.Group(func(r chi.Router) {
		r.Use(c.requireSession, c.checkCSRF)
		r.Post("/logout", c.logout)
		for _, p := range c.pages {
			if p.path == "/" {
				p.routes(c, r)
				continue
			}
			r.Route(p.path, func(r chi.Router) { p.routes(c, r) })
		}
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, notify.Errorf(notify.ENOTFOUND, "not_found", "no such page"))
	})
	return r
}

func (c *Console) now() time.Time { return c.cfg.Now() }

// secureHeaders sets what every answer of the console carries: no script,
// no framing, no sniffing, no caching of pages, no referrer off the site.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// staticFiles serves the embedded stylesheet (cacheable: a page names it
// with the build's version).
func staticFiles() http.Handler {
	fs := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		fs.ServeHTTP(w, r)
	})
}
