// Package config reads the gateway's settings from the environment (and,
// for several ISV apps, from the YAML file GATEWAY_CONFIG names), loads the
// keys and certificates they point to, and checks them: a missing or
// contradictory setting is one error that names it, and the gateway does
// not start.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // CONSOLE_TIME_ZONE in an image without a zoneinfo database

	"github.com/caarlos0/env/v11"
	"gopkg.in/yaml.v3"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/seal"
)

// Config is every setting of the gateway.
type Config struct {
	DatabaseURL     string        `env:"DATABASE_URL"`
	DatabaseMaxConn int32         `env:"DATABASE_MAX_CONNS" envDefault:"0"`
	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:":8080"`
	MaxBodyBytes    int64         `env:"MAX_BODY_BYTES" envDefault:"65536"`
	OpsAPITokens    []string      `env:"OPS_API_TOKENS"`
	TokenKey        string        `env:"TOKEN_ENCRYPTION_KEY"`
	TokenOldKeys    []string      `env:"TOKEN_ENCRYPTION_OLD_KEYS"` // former TokenKeys: they open tokens, never seal
	GatewayConfig   string        `env:"GATEWAY_CONFIG"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`
	// Group commit: at most BatchMax notifications per transaction, waiting
	// at most BatchWait for a batch to fill while another commits and more
	// are being verified, with at most BatchFlushers transactions in flight.
	BatchMax      int           `env:"BATCH_MAX" envDefault:"128"`
	BatchWait     time.Duration `env:"BATCH_WAIT" envDefault:"1ms"`
	BatchFlushers int           `env:"BATCH_FLUSHERS" envDefault:"2"`
	// PprofAddr, when set, serves net/http/pprof there (keep it on
	// localhost): for profiling, off by default.
	PprofAddr string `env:"PPROF_ADDR"`
	// InternalAddr, when set, is the internal listener's address: /healthz,
	// /readyz, /metrics and net/http/pprof are served there, and HTTP_ADDR
	// keeps /healthz but no longer serves /readyz or /metrics.
	InternalAddr string `env:"INTERNAL_ADDR"`
	// GatewayURL is Alipay's OpenAPI gateway, for outbound calls.
	GatewayURL string `env:"ALIPAY_GATEWAY_URL" envDefault:"https://openapi.alipay.com/gateway.do"`
	// AuthURL is Alipay's merchant authorization page, the base of the
	// links POST /v1/authorization-links hands out (checked by outbound.New
	// when outbound calls are on).
	AuthURL string `env:"ALIPAY_AUTH_URL" envDefault:"https://openauth.alipay.com/oauth2/appToAppAuth.htm"`
	// TrustedProxyList are the reverse proxies (IPs or CIDRs) whose
	// X-Forwarded-For names the client, for the authorization callback's
	// rate limit; none by default: the connection's address is the client.
	TrustedProxyList []string `env:"TRUSTED_PROXIES"`
	// MsgHost is the host of Alipay's message service WebSocket channel.
	MsgHost string `env:"ALIPAY_MSG_HOST" envDefault:"openchannel.alipay.com"`
	// MsgAllowInsecure lets MsgHost be a plain http:// (ws) URL: for a
	// local simulator only.
	MsgAllowInsecure bool `env:"ALIPAY_MSG_ALLOW_INSECURE" envDefault:"false"`
	// MaxClockSkew is how far ahead of the gateway's clock a notification's
	// time (utc_timestamp, notify_time, x-timestamp, a grant's auth_time)
	// may be before the notification is refused.
	MaxClockSkew time.Duration `env:"MAX_CLOCK_SKEW" envDefault:"5m"`
	// Webhooks: this replica delivers events to the endpoints unless
	// WebhookDispatch is off; at most WebhookConcurrency attempts to one
	// endpoint at once, each within WebhookTimeout; an idle endpoint is
	// looked at every WebhookPoll; an endpoint failing for WebhookDisableAfter
	// is disabled; a rotated-out secret signs for WebhookSecretOverlap.
	WebhookDispatch      bool          `env:"WEBHOOK_DISPATCH" envDefault:"true"`
	WebhookConcurrency   int           `env:"WEBHOOK_CONCURRENCY" envDefault:"16"`
	WebhookTimeout       time.Duration `env:"WEBHOOK_TIMEOUT" envDefault:"10s"`
	WebhookPoll          time.Duration `env:"WEBHOOK_POLL_INTERVAL" envDefault:"250ms"`
	WebhookDisableAfter  time.Duration `env:"WEBHOOK_DISABLE_AFTER" envDefault:"120h"`
	WebhookSecretOverlap time.Duration `env:"WEBHOOK_SECRET_OVERLAP" envDefault:"24h"`
	// Retention (notify.Retention; 0 keeps forever): applied and stale
	// notifications, failed and unhandled ones, events with their webhook
	// deliveries and attempts, template messages, and the digests of
	// pruned notifications. This replica takes part in pruning unless
	// Prune is off; it looks every PruneInterval and deletes at most
	// PruneBatch rows a statement.
	RetentionNotifications    time.Duration `env:"RETENTION_NOTIFICATIONS" envDefault:"2160h"`
	RetentionFailed           time.Duration `env:"RETENTION_FAILED" envDefault:"8760h"`
	RetentionEvents           time.Duration `env:"RETENTION_EVENTS" envDefault:"720h"`
	RetentionTemplateMessages time.Duration `env:"RETENTION_TEMPLATE_MESSAGES" envDefault:"2160h"`
	RetentionDigests          time.Duration `env:"RETENTION_DIGESTS" envDefault:"720h"`
	Prune                     bool          `env:"PRUNE" envDefault:"true"`
	PruneInterval             time.Duration `env:"PRUNE_INTERVAL" envDefault:"1h"`
	PruneBatch                int           `env:"PRUNE_BATCH" envDefault:"1000"`
	// Template message batches: at most TemplateSendRate calls a second
	// per ISV app across replicas ("20" for every app, or
	// "2021...=50,2021...=20", a bare number for the apps not named; 0 is
	// no limit), TemplateSendConcurrency calls in flight in this replica;
	// a batch of at most TemplateBatchMaxRecipients recipients and
	// TemplateBatchMaxBytes of upload. This replica sends unless
	// TemplateBatchDispatch is off.
	TemplateSendRate           string `env:"TEMPLATE_SEND_RATE" envDefault:"20"`
	TemplateSendConcurrency    int    `env:"TEMPLATE_SEND_CONCURRENCY" envDefault:"64"`
	TemplateBatchMaxRecipients int    `env:"TEMPLATE_BATCH_MAX_RECIPIENTS" envDefault:"100000"`
	TemplateBatchMaxBytes      int64  `env:"TEMPLATE_BATCH_MAX_BYTES" envDefault:"33554432"`
	TemplateBatchDispatch      bool   `env:"TEMPLATE_BATCH_DISPATCH" envDefault:"true"`
	// Reconciliation (internal/reconcile): a run asks Alipay about every
	// authorized merchant every ReconcileInterval (0: no scheduled runs),
	// at most ReconcileRate calls a second per ISV app across replicas (0:
	// no limit), and soon after an outage of at least ReconcileAfterOutage
	// ends (0: not after outages).
	ReconcileInterval    time.Duration `env:"RECONCILE_INTERVAL" envDefault:"6h"`
	ReconcileRate        float64       `env:"RECONCILE_RATE" envDefault:"5"`
	ReconcileAfterOutage time.Duration `env:"RECONCILE_AFTER_OUTAGE" envDefault:"5m"`
	// The ops console (internal/console): served under /console unless
	// Console is off; a session lasts ConsoleSessionTTL; times are shown
	// in ConsoleTimeZone (ConsoleLocation, loaded).
	Console           bool          `env:"CONSOLE" envDefault:"true"`
	ConsoleSessionTTL time.Duration `env:"CONSOLE_SESSION_TTL" envDefault:"12h"`
	ConsoleTimeZone   string        `env:"CONSOLE_TIME_ZONE" envDefault:"Asia/Shanghai"`

	// The one-app shortcut; GATEWAY_CONFIG lists several apps instead.
	App AppSettings `envPrefix:""`

	// Apps are the loaded, checked apps (from App or GATEWAY_CONFIG).
	Apps []*alipay.App `env:"-"`
	// Verifier verifies notifications for Apps, their keys prepared once.
	Verifier *alipay.Verifier `env:"-"`
	// Sealer encrypts authorization tokens with TOKEN_ENCRYPTION_KEY and
	// opens them with it or TOKEN_ENCRYPTION_OLD_KEYS; nil without
	// TOKEN_ENCRYPTION_KEY.
	Sealer *seal.Sealer `env:"-"`
	// TrustedProxies are TrustedProxyList, parsed.
	TrustedProxies []netip.Prefix `env:"-"`
	// TemplateRateDefault and TemplateRates are TemplateSendRate, parsed:
	// the rate of the apps not named, and the rate by app id.
	TemplateRateDefault float64            `env:"-"`
	TemplateRates       map[string]float64 `env:"-"`
	// ConsoleLocation is ConsoleTimeZone, loaded.
	ConsoleLocation *time.Location `env:"-"`
	// Keys are, by app id, the key material each app was loaded from, as
	// read (the console's verify page diagnoses with it, as alipayctl
	// verify does).
	Keys map[string]diagnose.DiagnoseInput `env:"-"`
}

// AppSettings is one ISV app's settings, as environment variables or as one
// entry of GATEWAY_CONFIG's apps list.
type AppSettings struct {
	ID              string   `env:"ALIPAY_APP_ID" yaml:"app_id"`
	PublicKey       string   `env:"ALIPAY_PUBLIC_KEY" yaml:"alipay_public_key"`
	PublicKeyFile   string   `env:"ALIPAY_PUBLIC_KEY_FILE" yaml:"alipay_public_key_file"`
	RootCertFile    string   `env:"ALIPAY_ROOT_CERT_FILE" yaml:"alipay_root_cert_file"`
	PublicCertFiles []string `env:"ALIPAY_PUBLIC_CERT_FILE" yaml:"alipay_public_cert_files"`
	EncryptKey      string   `env:"ALIPAY_ENCRYPT_KEY" yaml:"encrypt_key"`
	AllowRSA1       bool     `env:"ALIPAY_ALLOW_RSA1" yaml:"allow_rsa1"`
	// The app's own side, for outbound calls and the WebSocket channel.
	AppPrivateKeyFile string `env:"ALIPAY_APP_PRIVATE_KEY_FILE" yaml:"app_private_key_file"`
	AppCertFile       string `env:"ALIPAY_APP_CERT_FILE" yaml:"app_cert_file"`
	// Channel is how Alipay delivers: http (the default), websocket or both.
	Channel string `env:"ALIPAY_CHANNEL" yaml:"channel"`
}

// file is GATEWAY_CONFIG's format.
type file struct {
	Apps []AppSettings `yaml:"apps"`
}

// Load reads the environment through getenv-like lookups of os.Environ,
// loads what the settings point to, and checks them at time now. The error,
// if any, is one line that names the setting at fault.
func Load(environ map[string]string, now time.Time) (*Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if strings.TrimSpace(c.DatabaseURL) == "" {
		return nil, errors.New("config: DATABASE_URL is not set")
	}
	if c.MaxBodyBytes <= 0 {
		return nil, errors.New("config: MAX_BODY_BYTES must be a positive number of bytes")
	}
	if c.BatchMax < 1 || c.BatchFlushers < 1 || c.BatchWait < 0 {
		return nil, errors.New("config: BATCH_MAX and BATCH_FLUSHERS must be at least 1, BATCH_WAIT not negative")
	}
	if c.MaxClockSkew <= 0 || c.MaxClockSkew > time.Hour {
		return nil, errors.New("config: MAX_CLOCK_SKEW must be a positive duration of at most 1h (such as 5m)")
	}
	if c.WebhookConcurrency < 1 || c.WebhookConcurrency > 256 {
		return nil, errors.New("config: WEBHOOK_CONCURRENCY must be from 1 to 256")
	}
	if c.WebhookTimeout <= 0 || c.WebhookPoll <= 0 || c.WebhookDisableAfter <= 0 || c.WebhookSecretOverlap < 0 {
		return nil, errors.New("config: WEBHOOK_TIMEOUT, WEBHOOK_POLL_INTERVAL and WEBHOOK_DISABLE_AFTER must be positive durations, WEBHOOK_SECRET_OVERLAP not negative")
	}
	if err := c.Retention().Check(); err != nil {
		return nil, fmt.Errorf("config: RETENTION_*: %w", err)
	}
	if c.PruneInterval <= 0 || c.PruneBatch < 1 || c.PruneBatch > 100000 {
		return nil, errors.New("config: PRUNE_INTERVAL must be a positive duration, PRUNE_BATCH from 1 to 100000")
	}
	if c.TemplateSendConcurrency < 1 || c.TemplateSendConcurrency > 1024 {
		return nil, errors.New("config: TEMPLATE_SEND_CONCURRENCY must be from 1 to 1024")
	}
	if c.TemplateBatchMaxRecipients < 1 || c.TemplateBatchMaxRecipients > 1000000 {
		return nil, errors.New("config: TEMPLATE_BATCH_MAX_RECIPIENTS must be from 1 to 1000000")
	}
	if c.TemplateBatchMaxBytes < 1024 {
		return nil, errors.New("config: TEMPLATE_BATCH_MAX_BYTES must be at least 1024 bytes")
	}
	if c.ReconcileInterval < 0 || c.ReconcileInterval > 0 && c.ReconcileInterval < time.Minute || c.ReconcileRate < 0 || c.ReconcileAfterOutage < 0 {
		return nil, errors.New("config: RECONCILE_INTERVAL must be 0 (off) or at least 1m, RECONCILE_RATE and RECONCILE_AFTER_OUTAGE not negative")
	}
	if c.ConsoleSessionTTL < time.Minute || c.ConsoleSessionTTL > 30*24*time.Hour {
		return nil, errors.New("config: CONSOLE_SESSION_TTL must be from 1m to 720h (such as 12h)")
	}
	loc, err := time.LoadLocation(c.ConsoleTimeZone)
	if err != nil {
		return nil, fmt.Errorf("config: CONSOLE_TIME_ZONE %q: want an IANA time zone such as Asia/Shanghai or UTC", c.ConsoleTimeZone)
	}
	c.ConsoleLocation = loc
	if c.HTTPAddr == "" {
		return nil, errors.New("config: HTTP_ADDR is empty")
	}
	if c.InternalAddr != "" && (c.InternalAddr == c.HTTPAddr || c.InternalAddr == c.PprofAddr) {
		return nil, fmt.Errorf("config: INTERNAL_ADDR %s is also HTTP_ADDR or PPROF_ADDR; give the internal listener an address of its own", c.InternalAddr)
	}
	for _, t := range c.OpsAPITokens {
		if strings.TrimSpace(t) == "" {
			return nil, errors.New("config: OPS_API_TOKENS holds an empty token")
		}
	}
	if err := c.loadSealer(); err != nil {
		return nil, err
	}

	for _, p := range c.TrustedProxyList {
		prefix, err := parsePrefix(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("config: TRUSTED_PROXIES: %q: want an IP address or a CIDR such as 10.0.0.0/8", p)
		}
		c.TrustedProxies = append(c.TrustedProxies, prefix)
	}

	settings, err := c.appSettings()
	if err != nil {
		return nil, err
	}
	c.Keys = map[string]diagnose.DiagnoseInput{}
	for _, s := range settings {
		app, keys, err := s.load(now)
		if err != nil {
			return nil, err
		}
		c.Apps = append(c.Apps, app)
		c.Keys[app.ID] = keys
	}
	if c.TemplateRateDefault, c.TemplateRates, err = parseRates(c.TemplateSendRate, c.Apps); err != nil {
		return nil, err
	}
	if c.Verifier, err = alipay.NewVerifierWith(alipay.VerifierConfig{Apps: c.Apps, MaxClockSkew: c.MaxClockSkew}); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

// parseRates parses TEMPLATE_SEND_RATE: comma-separated, a bare number
// (the rate of the apps not named; 20 when none is given) or app_id=rate,
// each a non-negative number of calls a second (0: no limit), each app one
// of apps.
func parseRates(s string, apps []*alipay.App) (float64, map[string]float64, error) {
	def, byApp := 20.0, map[string]float64{}
	bare := false
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		app, value, named := strings.Cut(item, "=")
		rate, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if !named {
			rate, err = strconv.ParseFloat(item, 64)
		}
		if err != nil || rate < 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
			return 0, nil, fmt.Errorf("config: TEMPLATE_SEND_RATE: %q: want calls a second (0: no limit), as 20 or app_id=20", item)
		}
		if !named {
			if bare {
				return 0, nil, errors.New("config: TEMPLATE_SEND_RATE gives two rates for the apps not named")
			}
			def, bare = rate, true
			continue
		}
		app = strings.TrimSpace(app)
		known := false
		for _, a := range apps {
			known = known || a.ID == app
		}
		if !known {
			return 0, nil, fmt.Errorf("config: TEMPLATE_SEND_RATE: %q is not a configured app", app)
		}
		if _, dup := byApp[app]; dup {
			return 0, nil, fmt.Errorf("config: TEMPLATE_SEND_RATE gives app %s twice", app)
		}
		byApp[app] = rate
	}
	return def, byApp, nil
}

// parsePrefix parses a CIDR, or an IP address as the prefix of that one
// address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// loadSealer makes the Sealer from TOKEN_ENCRYPTION_KEY and
// TOKEN_ENCRYPTION_OLD_KEYS; none without a key.
func (c *Config) loadSealer() error {
	if c.TokenKey == "" {
		if len(c.TokenOldKeys) > 0 {
			return errors.New("config: TOKEN_ENCRYPTION_OLD_KEYS is set but TOKEN_ENCRYPTION_KEY is not: old keys only open tokens, the current key seals them")
		}
		return nil
	}
	key, err := seal.ParseKey(c.TokenKey)
	if err != nil {
		return fmt.Errorf("config: TOKEN_ENCRYPTION_KEY: %v", err)
	}
	var old [][]byte
	for i, s := range c.TokenOldKeys {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("config: TOKEN_ENCRYPTION_OLD_KEYS: key %d is empty", i+1)
		}
		k, err := seal.ParseKey(s)
		if err != nil {
			return fmt.Errorf("config: TOKEN_ENCRYPTION_OLD_KEYS: key %d: %v", i+1, err)
		}
		old = append(old, k)
	}
	if c.Sealer, err = seal.New(key, old...); err != nil {
		return fmt.Errorf("config: TOKEN_ENCRYPTION_OLD_KEYS: %v", err)
	}
	return nil
}

// Environ returns the process environment as a map, for Load.
func Environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// appSettings returns the apps to load: GATEWAY_CONFIG's, or the one the
// ALIPAY_* variables describe.
func (c *Config) appSettings() ([]AppSettings, error) {
	envApp := c.App
	envSet := envApp.ID != "" || envApp.PublicKey != "" || envApp.PublicKeyFile != "" ||
		envApp.RootCertFile != "" || len(envApp.PublicCertFiles) > 0 || envApp.EncryptKey != "" ||
		envApp.AppPrivateKeyFile != "" || envApp.AppCertFile != "" || envApp.Channel != ""
	if c.GatewayConfig != "" {
		if envSet {
			return nil, errors.New("config: GATEWAY_CONFIG and ALIPAY_* app variables are both set; list every app in GATEWAY_CONFIG, or use the ALIPAY_* variables for one app")
		}
		data, err := os.ReadFile(c.GatewayConfig)
		if err != nil {
			return nil, fmt.Errorf("config: GATEWAY_CONFIG: %v", err)
		}
		var f file
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "yaml: unmarshal errors:", "")), " ")
			return nil, fmt.Errorf("config: GATEWAY_CONFIG %s: %s", c.GatewayConfig, msg)
		}
		if len(f.Apps) == 0 {
			return nil, fmt.Errorf("config: GATEWAY_CONFIG %s lists no apps", c.GatewayConfig)
		}
		return f.Apps, nil
	}
	if envApp.ID == "" {
		if envSet {
			return nil, errors.New("config: ALIPAY_APP_ID is not set, but other ALIPAY_* app variables are")
		}
		return nil, errors.New("config: no Alipay app configured: set ALIPAY_APP_ID with ALIPAY_PUBLIC_KEY(_FILE) or ALIPAY_ROOT_CERT_FILE and ALIPAY_PUBLIC_CERT_FILE, or GATEWAY_CONFIG")
	}
	return []AppSettings{envApp}, nil
}

// load reads an app's keys or certs and checks them at now, and returns
// them also as read, for a diagnosis.
func (s AppSettings) load(now time.Time) (*alipay.App, diagnose.DiagnoseInput, error) {
	keys := diagnose.DiagnoseInput{AllowRSA1: s.AllowRSA1}
	app, err := s.loadKeys(now, &keys)
	return app, keys, err
}

// loadKeys is load, keeping what it reads in keys.
func (s AppSettings) loadKeys(now time.Time, keys *diagnose.DiagnoseInput) (*alipay.App, error) {
	if s.ID == "" {
		return nil, errors.New("config: an app has no app_id")
	}
	where := "app " + s.ID
	keyMode := s.PublicKey != "" || s.PublicKeyFile != ""
	certMode := s.RootCertFile != "" || len(s.PublicCertFiles) > 0
	app := &alipay.App{ID: s.ID, AllowRSA1: s.AllowRSA1}
	switch {
	case keyMode && certMode:
		return nil, fmt.Errorf("config: %s: both a public key (ALIPAY_PUBLIC_KEY*) and certificates (ALIPAY_*_CERT_FILE) are set; choose one mode", where)
	case s.PublicKey != "" && s.PublicKeyFile != "":
		return nil, fmt.Errorf("config: %s: ALIPAY_PUBLIC_KEY and ALIPAY_PUBLIC_KEY_FILE are both set; choose one", where)
	case keyMode:
		data, name := []byte(s.PublicKey), "ALIPAY_PUBLIC_KEY"
		if s.PublicKeyFile != "" {
			var err error
			name = "ALIPAY_PUBLIC_KEY_FILE " + s.PublicKeyFile
			if data, err = os.ReadFile(s.PublicKeyFile); err != nil {
				return nil, fmt.Errorf("config: %s: %v", where, err)
			}
		}
		pub, err := alipay.ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %s: %v", where, name, err)
		}
		keys.PublicKeys = append(keys.PublicKeys, diagnose.Source{Name: name, Data: data})
		app.Keys = []alipay.Key{{Pub: pub}}
	case certMode:
		if s.RootCertFile == "" {
			return nil, fmt.Errorf("config: %s: ALIPAY_PUBLIC_CERT_FILE is set but ALIPAY_ROOT_CERT_FILE is not", where)
		}
		if len(s.PublicCertFiles) == 0 {
			return nil, fmt.Errorf("config: %s: ALIPAY_ROOT_CERT_FILE is set but ALIPAY_PUBLIC_CERT_FILE is not", where)
		}
		data, err := os.ReadFile(s.RootCertFile)
		if err != nil {
			return nil, fmt.Errorf("config: %s: ALIPAY_ROOT_CERT_FILE: %v", where, err)
		}
		roots, err := alipay.ParseRootBundle(data)
		if err != nil {
			return nil, fmt.Errorf("config: %s: ALIPAY_ROOT_CERT_FILE %s: %v", where, s.RootCertFile, err)
		}
		keys.RootCert = &diagnose.Source{Name: "ALIPAY_ROOT_CERT_FILE " + s.RootCertFile, Data: data}
		app.CertMode = true
		app.RootCertSN = roots.SN
		for _, name := range s.PublicCertFiles {
			name = strings.TrimSpace(name)
			data, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("config: %s: ALIPAY_PUBLIC_CERT_FILE: %v", where, err)
			}
			c, err := alipay.ParseAlipayCert(data, roots, now)
			if err != nil {
				return nil, fmt.Errorf("config: %s: ALIPAY_PUBLIC_CERT_FILE %s: %v", where, name, err)
			}
			keys.Certs = append(keys.Certs, diagnose.Source{Name: "ALIPAY_PUBLIC_CERT_FILE " + name, Data: data})
			app.Keys = append(app.Keys, alipay.Key{SN: c.SN, Pub: c.Key, NotBefore: c.Cert.NotBefore, NotAfter: c.Cert.NotAfter})
		}
	default:
		return nil, fmt.Errorf("config: %s: no Alipay public key or cert: set ALIPAY_PUBLIC_KEY(_FILE), or ALIPAY_ROOT_CERT_FILE and ALIPAY_PUBLIC_CERT_FILE", where)
	}
	if s.EncryptKey != "" {
		key, err := seal.ParseKey(s.EncryptKey)
		if err != nil {
			return nil, fmt.Errorf("config: %s: ALIPAY_ENCRYPT_KEY: %v", where, err)
		}
		app.EncryptKey = key
	}
	if err := s.loadAppSide(app, where); err != nil {
		return nil, err
	}
	return app, nil
}

// loadAppSide loads the app's private key, its cert (cert mode) and its
// channel setting.
func (s AppSettings) loadAppSide(app *alipay.App, where string) error {
	switch s.Channel {
	case "", alipay.DeliverHTTP:
		app.Delivery = alipay.DeliverHTTP
	case alipay.DeliverWebSocket, alipay.DeliverBoth:
		app.Delivery = s.Channel
	default:
		return fmt.Errorf("config: %s: ALIPAY_CHANNEL %q: want http, websocket or both", where, s.Channel)
	}
	if s.AppPrivateKeyFile != "" {
		data, err := os.ReadFile(s.AppPrivateKeyFile)
		if err != nil {
			return fmt.Errorf("config: %s: ALIPAY_APP_PRIVATE_KEY_FILE: %v", where, err)
		}
		if app.PrivateKey, err = alipay.ParsePrivateKey(data); err != nil {
			return fmt.Errorf("config: %s: ALIPAY_APP_PRIVATE_KEY_FILE %s: %v", where, s.AppPrivateKeyFile, err)
		}
	}
	if app.Delivery != alipay.DeliverHTTP && app.PrivateKey == nil {
		return fmt.Errorf("config: %s: ALIPAY_CHANNEL %s needs ALIPAY_APP_PRIVATE_KEY_FILE (the app key signs the channel's register and connect)", where, app.Delivery)
	}
	if app.CertMode && app.PrivateKey != nil && s.AppCertFile == "" {
		return fmt.Errorf("config: %s: certificate mode with ALIPAY_APP_PRIVATE_KEY_FILE needs ALIPAY_APP_CERT_FILE (appCertPublicKey_%s.crt) for outbound calls", where, s.ID)
	}
	if s.AppCertFile != "" {
		if !app.CertMode {
			return fmt.Errorf("config: %s: ALIPAY_APP_CERT_FILE is set but the app is in public-key mode", where)
		}
		data, err := os.ReadFile(s.AppCertFile)
		if err != nil {
			return fmt.Errorf("config: %s: ALIPAY_APP_CERT_FILE: %v", where, err)
		}
		c, err := alipay.ParseCert(data)
		if err != nil {
			return fmt.Errorf("config: %s: ALIPAY_APP_CERT_FILE %s: %v", where, s.AppCertFile, err)
		}
		app.AppCertSN = alipay.CertSN(c)
	}
	return nil
}

// EnvVars returns the name of every environment variable the gateway reads,
// sorted: deploy manifests are checked against it.
func EnvVars() []string {
	var names []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" && name != "-" {
				names = append(names, name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}))
	sort.Strings(names)
	return names
}

// Retention is the RETENTION_* settings.
func (c *Config) Retention() notify.Retention {
	return notify.Retention{
		Notifications:    c.RetentionNotifications,
		Failed:           c.RetentionFailed,
		Events:           c.RetentionEvents,
		TemplateMessages: c.RetentionTemplateMessages,
		Digests:          c.RetentionDigests,
	}
}
