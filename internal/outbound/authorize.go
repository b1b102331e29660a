package outbound

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Grant is a merchant app's authorization of an ISV app, as the
// authorization flow stored it. It never holds a token.
type Grant struct {
	AppID       string `json:"app_id"`
	AuthAppID   string `json:"auth_app_id"`
	UserID      string `json:"user_id"`
	ExpiresIn   int64  `json:"expires_in"`
	ReExpiresIn int64  `json:"re_expires_in"`
	// Applied is false when a newer change of the authorization (a later
	// grant or cancellation) was already recorded: this one changed nothing.
	Applied bool `json:"applied"`
}

// tokenSet is one authorization's tokens in alipay.open.auth.token.app's
// answer.
type tokenSet struct {
	AppAuthToken    string      `json:"app_auth_token"`
	AppRefreshToken string      `json:"app_refresh_token"`
	AuthAppID       string      `json:"auth_app_id"`
	UserID          string      `json:"user_id"`
	ExpiresIn       notify.Text `json:"expires_in"`
	ReExpiresIn     notify.Text `json:"re_expires_in"`
}

// tokenAnswer is the answer of alipay.open.auth.token.app: the tokens at
// the top level (the older form, and refresh_token answers), or a list of
// them under "tokens" (the newer form of authorization_code answers).
type tokenAnswer struct {
	common
	tokenSet
	Tokens []tokenSet `json:"tokens"`
}

// sets returns every token set of the answer, once per auth_app_id. It
// returns an EUPSTREAM *notify.Error when there is none, or one lacks its
// token or auth_app_id.
func (a *tokenAnswer) sets() ([]tokenSet, error) {
	var out []tokenSet
	seen := map[string]bool{}
	for _, t := range append([]tokenSet{a.tokenSet}, a.Tokens...) {
		if (t.AppAuthToken != "" || t.AuthAppID != "") && !seen[t.AuthAppID] {
			seen[t.AuthAppID] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer carries no token")
	}
	for _, t := range out {
		if t.AppAuthToken == "" || t.AuthAppID == "" {
			return nil, notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer lacks app_auth_token or auth_app_id")
		}
	}
	return out, nil
}

// Callback is the query of Alipay's redirect after a merchant authorized
// an ISV app: /alipay/auth/callback?app_id=...&app_auth_code=...&state=...
type Callback struct {
	// AppID is the ISV app; empty means the only app.
	AppID string
	// Code is the app_auth_code: good once, for 24 hours. Never logged.
	Code string
	// State is the link's state, as AuthorizationLink issued it.
	State string
}

// CompleteAuthorization checks the redirect cb after a merchant authorized
// an ISV app, then exchanges its app_auth_code (alipay.open.auth.token.app,
// grant_type=authorization_code) and stores the tokens sealed, ordered with
// the authorization notifications as of now. Alipay is called only once the
// app is known, the state checks out for it and the code is there.
//
// It returns the grants (one per merchant app the code covers) and: an
// EINVALID *notify.Error when app_id is missing among several apps, when
// the state is missing, malformed, forged, expired or issued for another
// app (reasons missing_state, malformed_state, forged_state, expired_state,
// other_app_state), or when the code is missing (missing_code); ENOTFOUND
// for an app that cannot call; a *BusinessError when Alipay refused the
// code (used, expired, unknown); EUPSTREAM when the call failed; and the
// Store's EUNAVAILABLE.
func (s *Service) CompleteAuthorization(ctx context.Context, cb Callback) ([]Grant, error) {
	c, err := s.client(cb.AppID)
	if err != nil {
		return nil, err
	}
	if err := s.states.check(cb.State, c.app.ID, s.now()); err != nil {
		return nil, err
	}
	if cb.Code == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_code", "app_auth_code is missing")
	}
	// A code is good once: finish the exchange and store what it gave even
	// if the browser goes away.
	ctx = context.WithoutCancel(ctx)
	var ans tokenAnswer
	biz := map[string]any{"grant_type": "authorization_code", "code": cb.Code}
	if _, err := s.call(ctx, c, MethodAuthTokenApp, biz, "", &ans); err != nil {
		return nil, err
	}
	sets, err := ans.sets()
	if err != nil {
		return nil, err
	}
	var out []Grant
	for _, t := range sets {
		g, err := s.saveGrant(ctx, c.app.ID, t)
		if err != nil {
			return nil, err
		}
		s.log.Info().Str("app_id", g.AppID).Str("auth_app_id", g.AuthAppID).Bool("applied", g.Applied).Msg("merchant authorization stored")
		out = append(out, g)
	}
	return out, nil
}

// saveGrant seals t's tokens and stores them as a grant at now.
func (s *Service) saveGrant(ctx context.Context, appID string, t tokenSet) (Grant, error) {
	owner := notify.TokenOwner(appID, t.AuthAppID)
	token, err := s.sealer.Seal(t.AppAuthToken, owner)
	if err != nil {
		return Grant{}, err
	}
	refresh, err := s.sealer.Seal(t.AppRefreshToken, owner)
	if err != nil {
		return Grant{}, err
	}
	ms := s.now().UnixMilli()
	g := Grant{AppID: appID, AuthAppID: t.AuthAppID, UserID: t.UserID, ExpiresIn: t.ExpiresIn.Int64(), ReExpiresIn: t.ReExpiresIn.Int64()}
	g.Applied, err = s.store.SaveGrant(ctx, notify.AuthGrant{
		Origin:             notify.Origin{AppID: appID, NotifyID: fmt.Sprintf("oauth:%s:%d", t.AuthAppID, ms), At: ms},
		AuthAppID:          t.AuthAppID,
		UserID:             t.UserID,
		AuthTime:           ms,
		SealedAuthToken:    token,
		SealedRefreshToken: refresh,
		ExpiresIn:          g.ExpiresIn,
		ReExpiresIn:        g.ReExpiresIn,
	})
	return g, err
}

// Authorization links' lifetimes: DefaultLinkTTL when the request names
// none, from MinLinkTTL to MaxLinkTTL.
const (
	DefaultLinkTTL = time.Hour
	MinLinkTTL     = time.Minute
	MaxLinkTTL     = 24 * time.Hour
	// maxRedirectURI caps a redirect_uri's length.
	maxRedirectURI = 2048
)

// LinkRequest asks for a merchant authorization link (POST
// /v1/authorization-links).
type LinkRequest struct {
	// AppID is the ISV app to authorize; empty means the only app.
	AppID string `json:"app_id"`
	// RedirectURI is where Alipay sends the merchant's browser afterwards:
	// the gateway's /alipay/auth/callback, or a page that forwards its query
	// there. It must be the app's authorization callback address
	// (授权回调地址) in the Alipay console; Alipay checks that, not the gateway.
	RedirectURI string `json:"redirect_uri"`
	// TTLSeconds is how long the link stays good; DefaultLinkTTL when nil.
	TTLSeconds *int64 `json:"ttl_seconds"`
}

// Link is a merchant authorization link: Alipay's authorization page
// (ALIPAY_AUTH_URL) with app_id, redirect_uri and a signed state.
type Link struct {
	URL       string    `json:"url"`
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	// AppID is the ISV app the link authorizes (for logs; the URL has it).
	AppID string `json:"-"`
}

// AuthorizationLink returns a link for a merchant to authorize req's app,
// with a state that the callback checks (CompleteAuthorization); nothing
// is stored. It returns an EINVALID *notify.Error when app_id is missing
// among several apps (missing_app_id), when redirect_uri is not an
// absolute https URL (http on a loopback host) or holds user info, a
// fragment, or app_id, app_auth_code or state in its query
// (bad_redirect_uri), or when ttl_seconds is out of range (bad_ttl);
// ENOTFOUND for an app that cannot call; and EINTERNAL when the system has
// no randomness for the nonce.
func (s *Service) AuthorizationLink(req LinkRequest) (Link, error) {
	c, err := s.client(req.AppID)
	if err != nil {
		return Link{}, err
	}
	if err := checkRedirectURI(req.RedirectURI); err != nil {
		return Link{}, err
	}
	ttl := DefaultLinkTTL
	if req.TTLSeconds != nil {
		lo, hi := int64(MinLinkTTL/time.Second), int64(MaxLinkTTL/time.Second)
		if *req.TTLSeconds < lo || *req.TTLSeconds > hi {
			return Link{}, notify.Errorf(notify.EINVALID, "bad_ttl", "ttl_seconds must be from %d to %d", lo, hi)
		}
		ttl = time.Duration(*req.TTLSeconds) * time.Second
	}
	exp := s.now().Add(ttl).Truncate(time.Second)
	state, err := s.states.issue(c.app.ID, exp)
	if err != nil {
		return Link{}, err
	}
	u := *s.authURL
	q := u.Query()
	q.Set("app_id", c.app.ID)
	q.Set("redirect_uri", req.RedirectURI)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return Link{URL: u.String(), State: state, ExpiresAt: exp.UTC(), AppID: c.app.ID}, nil
}

// callbackParams are the redirect's parameters that Alipay adds to the
// redirect_uri: the redirect_uri may not hold them itself.
var callbackParams = []string{"app_id", "app_auth_code", "state"}

// checkRedirectURI returns an EINVALID *notify.Error (bad_redirect_uri)
// unless u is an absolute https URL, or http on a loopback host (for
// development), with a host, no user info, no fragment, and none of the
// parameters Alipay adds on the redirect.
func checkRedirectURI(u string) error {
	bad := func(format string, args ...any) error {
		return notify.Errorf(notify.EINVALID, "bad_redirect_uri", "redirect_uri "+format, args...)
	}
	if u == "" {
		return bad("is required")
	}
	if len(u) > maxRedirectURI {
		return bad("is over %d characters", maxRedirectURI)
	}
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() || p.Host == "" || p.Opaque != "" {
		return bad("must be an absolute URL such as https://gateway.example.com/alipay/auth/callback")
	}
	switch {
	case p.Scheme == "https":
	case p.Scheme == "http" && loopback(p.Hostname()):
	default:
		return bad("must be https (http only on localhost)")
	}
	if p.User != nil {
		return bad("may not hold a user name or password")
	}
	if strings.Contains(u, "#") {
		return bad("may not hold a fragment (#...)")
	}
	q, err := url.ParseQuery(p.RawQuery)
	if err != nil {
		return bad("has a malformed query")
	}
	for _, k := range callbackParams {
		if q.Has(k) {
			return bad("may not hold %s: Alipay adds it on the redirect", k)
		}
	}
	return nil
}

// loopback reports whether host is localhost or a loopback address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseAuthURL parses an authorization page URL (ALIPAY_AUTH_URL): an
// absolute http or https URL with a host, no user info and no fragment. Its
// own query parameters are kept in links. It returns an error naming s
// otherwise.
func ParseAuthURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want an absolute http(s) URL such as %s", s, DefaultAuthURL)
	}
	return u, nil
}
