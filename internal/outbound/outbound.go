// Package outbound calls Alipay's OpenAPI for the ISV: subscription template
// messages (send, and the subscription query), and the merchant
// authorization flow (exchanging the app_auth_code of the redirect, and
// refreshing the tokens before they expire).
//
// Calls go through smartwalle/alipay's client, built so that it never
// trusts what it was not given: requests are signed with the app's private
// key; an answer is taken as a success only when it is signed by one of the
// app's configured Alipay keys (the public key, or the configured cert that
// the answer's alipay_cert_sn names); the client is made in "sandbox" mode
// only so that it never downloads an unknown Alipay cert, and its gateway
// is ALIPAY_GATEWAY_URL. An unsigned error answer (Alipay does not sign its
// refusal of a request it cannot attribute) is reported as Alipay's error:
// it can only stop a call, never make one look done.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/seal"
)

// Error codes of the outbound side, besides notify's. The HTTP layer maps
// them to statuses in its one table: EBUSINESS to 422, EUPSTREAM to 502.
const (
	// EBUSINESS: Alipay answered, signed, with an error code: nothing was
	// done. The *BusinessError carries Alipay's codes.
	EBUSINESS = "alipay_business_error"
	// EUPSTREAM: the call failed (transport, timeout, HTTP 5xx, Alipay's
	// 20000), or its answer could not be trusted (unsigned, bad signature,
	// unknown cert): whether Alipay acted is unknown.
	EUPSTREAM = "upstream_error"
)

// Config is what New needs.
type Config struct {
	// Apps are the configured ISV apps; those with a PrivateKey can call.
	Apps []*alipay.App
	// GatewayURL is Alipay's OpenAPI gateway (ALIPAY_GATEWAY_URL).
	GatewayURL string
	// AuthURL is the merchant authorization page that links point at
	// (ALIPAY_AUTH_URL); DefaultAuthURL when empty.
	AuthURL string
	Store   Store
	// Sealer opens and seals the merchants' tokens (TOKEN_ENCRYPTION_KEY),
	// and gives the key that signs authorization links' states.
	Sealer  *seal.Sealer
	Metrics *metrics.Metrics
	Logger  zerolog.Logger
	// Timeout bounds one call to Alipay; 15s when zero.
	Timeout time.Duration
	// Transport carries the calls; when nil, http.DefaultTransport's
	// settings with a pool of MaxIdleConnsPerHost idle connections to
	// Alipay (the default transport keeps 2, and a batch sending 1,000 a
	// second would dial for nearly every call).
	Transport http.RoundTripper
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service is the outbound side of the gateway. It is safe for concurrent
// use.
type Service struct {
	store   Store
	sealer  *seal.Sealer
	metrics *metrics.Metrics
	log     zerolog.Logger
	now     func() time.Time
	stale   time.Duration      // a pending send older than this is taken as abandoned
	clients map[string]*client // by app id
	ids     []string           // the app ids that can call, sorted
	authURL *url.URL           // the authorization page of links
	states  stateSigner
}

// MaxIdleConnsPerHost is how many idle connections to Alipay the default
// transport keeps: more than the batch sender's concurrency
// (TEMPLATE_SEND_CONCURRENCY) is pointless, fewer makes it dial.
const MaxIdleConnsPerHost = 256

// DefaultAuthURL is Alipay's third-party app authorization page
// (appToAppAuth.htm), for the links of AuthorizationLink.
const DefaultAuthURL = "https://openauth.alipay.com/oauth2/appToAppAuth.htm"

// Configured reports whether any of apps can make outbound calls (it has
// an app private key).
func Configured(apps []*alipay.App) bool {
	for _, a := range apps {
		if a.PrivateKey != nil {
			return true
		}
	}
	return false
}

// New returns the Service for the apps of cfg that have a private key. It
// returns an error when no app has one, when Store, Sealer or GatewayURL is
// missing, when AuthURL is not an absolute http(s) URL, or when a
// certificate-mode app lacks its app cert SN (ALIPAY_APP_CERT_FILE) or root
// cert SN.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("outbound: no store")
	}
	if cfg.Sealer == nil {
		return nil, errors.New("outbound: TOKEN_ENCRYPTION_KEY is not set: merchant tokens can be neither stored nor used")
	}
	if cfg.GatewayURL == "" {
		return nil, errors.New("outbound: ALIPAY_GATEWAY_URL is empty")
	}
	if cfg.AuthURL == "" {
		cfg.AuthURL = DefaultAuthURL
	}
	authURL, err := ParseAuthURL(cfg.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("outbound: ALIPAY_AUTH_URL: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{store: cfg.Store, sealer: cfg.Sealer, metrics: cfg.Metrics, log: cfg.Logger, now: cfg.Now,
		stale: staleAfter(cfg.Timeout), clients: map[string]*client{},
		authURL: authURL, states: stateSigner{keys: cfg.Sealer.DeriveKeys(stateKeyPurpose)}}
	if cfg.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = MaxIdleConnsPerHost, MaxIdleConnsPerHost
		cfg.Transport = t
	}
	hc := &http.Client{Timeout: cfg.Timeout, Transport: statusCheck{next: cfg.Transport}}
	for _, a := range cfg.Apps {
		if a.PrivateKey == nil {
			continue
		}
		c, err := newClient(a, cfg.GatewayURL, hc)
		if err != nil {
			return nil, fmt.Errorf("outbound: app %s: %w", a.ID, err)
		}
		s.clients[a.ID] = c
		s.ids = append(s.ids, a.ID)
	}
	if len(s.ids) == 0 {
		return nil, errors.New("outbound: no app has a private key (ALIPAY_APP_PRIVATE_KEY_FILE)")
	}
	sort.Strings(s.ids)
	return s, nil
}

// AppIDs returns the ids of the apps that can call, sorted.
func (s *Service) AppIDs() []string { return append([]string(nil), s.ids...) }

// client returns the client of appID; an empty appID means the only app.
// It returns an EINVALID *notify.Error when appID is empty and several
// apps can call, and an ENOTFOUND one when appID cannot call.
func (s *Service) client(appID string) (*client, error) {
	if appID == "" {
		if len(s.ids) > 1 {
			return nil, notify.Errorf(notify.EINVALID, "missing_app_id", "app_id is required: several apps are configured (%d)", len(s.ids))
		}
		appID = s.ids[0]
	}
	c, ok := s.clients[appID]
	if !ok {
		return nil, notify.Errorf(notify.ENOTFOUND, "unknown_app", "app_id %q is not a configured app with a private key", appID)
	}
	return c, nil
}

// authToken opens the app_auth_token of authAppID's authorization of
// appID. It returns the Store's ENOTFOUND and ECONFLICT errors, and an
// EINTERNAL *notify.Error when the sealed token does not open.
func (s *Service) authToken(ctx context.Context, appID, authAppID string) (string, error) {
	sealed, err := s.store.AuthToken(ctx, appID, authAppID)
	if err != nil {
		return "", err
	}
	token, err := s.sealer.Open(sealed, notify.TokenOwner(appID, authAppID))
	if err != nil || token == "" {
		return "", notify.Errorf(notify.EINTERNAL, "token_unreadable", "the stored token of %s does not open with TOKEN_ENCRYPTION_KEY or TOKEN_ENCRYPTION_OLD_KEYS", authAppID)
	}
	return token, nil
}
