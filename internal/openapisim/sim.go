// Package openapisim is a local stand-in for Alipay's OpenAPI gateway, for
// tests: an httptest server that checks each request the way Alipay does
// (common parameters, the app's RSA2 signature over every parameter but
// sign, sorted by key, sign_type included; in certificate mode the app and
// root cert SNs; the merchant's app_auth_token) and answers like Alipay:
// {"<method_with_underscores>_response": {...}, "sign": "..."}, the
// signature over the exact text of the response object, by the platform
// key (in certificate mode with alipay_cert_sn).
//
// It implements the methods the gateway calls:
// alipay.open.app.mini.templatemessage.send,
// alipay.open.app.messagetemplate.subscribe.query and
// alipay.open.auth.token.app, and the reconciler's queries (reconcile.go:
// alipay.open.mini.version.list.query, .version.detail.query and
// alipay.open.auth.token.app.query, answered from versions and token states
// a test sets); and it can be told to fail the next call of a
// method (an HTTP 5xx, a delay or no answer at all, a business error, an
// unsigned or badly signed answer).
//
// For load (limits.go): a rate limit per app (SetRateLimit: 40005 "Call
// Limited"), a share of a method's calls failing, chosen by recipient and
// attempt so runs repeat (SetFailure; with Fault.Deliver "delivered,
// answer lost"), users every send to whom fails (FailUser), sends refused
// without a subscription (RequireSubscription), the time of each delivery
// (SendTimes), counters (Stats) and Config.Lean. Answer signatures are
// cached by answer text, so the simulator costs little at 1,000 calls a
// second. New gives a simulator without a server of its own, an
// http.Handler for cmd/openapisim.
package openapisim

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// The methods the simulator implements.
const (
	MethodTemplateMessageSend = "alipay.open.app.mini.templatemessage.send"
	MethodSubscribeQuery      = "alipay.open.app.messagetemplate.subscribe.query"
	MethodAuthTokenApp        = "alipay.open.auth.token.app"
)

// App is an ISV app the simulator knows.
type App struct {
	ID string
	// Pub checks the app's request signatures.
	Pub *rsa.PublicKey
	// AppCertSN and RootCertSN, when set (certificate mode), are what
	// every request must carry as app_cert_sn and alipay_root_cert_sn.
	AppCertSN  string
	RootCertSN string
}

// Config is what Start needs.
type Config struct {
	Apps []App
	// SignKey is Alipay's key: it signs every answer.
	SignKey *rsa.PrivateKey
	// CertSN, when set (certificate mode), is sent as alipay_cert_sn with
	// every signed answer.
	CertSN string
	// Lean keeps no copy of a call's parameters (Call.Params and Call.Biz
	// are nil), for long runs.
	Lean bool
}

// Fault is what the next call of a method does instead of answering
// normally. The request is checked first either way.
type Fault struct {
	// HTTPStatus answers this status with an HTML body.
	HTTPStatus int
	// Delay waits before answering (normally, or with the other fields).
	Delay time.Duration
	// Hang never answers: the client has to give up.
	Hang bool
	// Code (with Msg, SubCode, SubMsg) answers this error, signed, as
	// Alipay answers a business error (code 40004 and a sub_code).
	Code, Msg, SubCode, SubMsg string
	// Unsigned leaves the signature out of the answer.
	Unsigned bool
	// BadSign signs the answer with another key.
	BadSign bool
	// SignWith signs the answer with this key instead of Config.SignKey
	// (an Alipay cert rotation, with CertSN).
	SignWith *rsa.PrivateKey
	// CertSN answers with this alipay_cert_sn instead of Config.CertSN.
	CertSN string
	// AuthAppID answers alipay.open.auth.token.app with tokens for this
	// merchant app instead of the one the code or refresh token belongs
	// to (whose tokens stay valid), as a confused answer would.
	AuthAppID string
	// Deliver carries the call out first (a send is delivered, and shows
	// in Sent), then answers as the other fields say: "delivered, answer
	// lost" with a 20000, a hang or an HTTP error.
	Deliver bool
}

// Call is a request the simulator accepted (its signature verified).
type Call struct {
	Method string
	AppID  string
	Params url.Values // every parameter, sign and app_auth_token included
	Biz    map[string]any
}

// Message is a template message the simulator delivered.
type Message struct {
	AppID          string
	AuthAppID      string // the merchant app it was sent for; empty for the ISV's own
	ToUserID       string
	ToOpenID       string
	UserTemplateID string
	Page           string
	Data           string
	FormID         string
}

// grant is one authorization the simulator issued tokens for.
type grant struct {
	appID, authAppID, userID string
}

// Sim is a running simulator. It is safe for concurrent use.
type Sim struct {
	srv     *httptest.Server
	cfg     Config
	apps    map[string]App
	closing chan struct{}
	once    sync.Once

	mu            sync.Mutex
	faults        map[string][]Fault
	requests      int // every HTTP request, accepted or not
	calls         []Call
	sent          []Message
	codes         map[string]grant // app_auth_code -> grant, single use
	tokens        map[string]grant // app_auth_token -> grant
	refresh       map[string]grant // app_refresh_token -> grant
	expiresIn     int64
	reExpiresIn   int64
	subscriptions map[string]map[string]Subscription // user -> template -> state
	recon         reconState                         // the query methods' state (reconcile.go)
	lim           limits                             // rate limits, failure fractions, counters (limits.go)
}

// Subscription is a user's subscription to a template, as the query
// answers it.
type Subscription struct {
	State string // "1" subscribed, "0" refused
	Type  string // "longterm" or "onetime"
}

// Start starts a simulator; Close stops it.
func Start(cfg Config) *Sim {
	s := New(cfg)
	s.srv = httptest.NewServer(s)
	return s
}

// URL is the gateway URL (ALIPAY_GATEWAY_URL).
func (s *Sim) URL() string { return s.srv.URL + "/gateway.do" }

// Close stops the simulator, releasing calls left hanging.
func (s *Sim) Close() {
	s.once.Do(func() { close(s.closing) })
	if s.srv != nil {
		s.srv.Close()
	}
}

// Fail makes the next call of method do f. Faults queue up.
func (s *Sim) Fail(method string, f Fault) {
	if f.BadSign {
		otherKey() // made now, not while a client waits for the answer
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[method] = append(s.faults[method], f)
}

// Requests returns how many HTTP requests reached the simulator, whatever
// they were: a test that no call reached Alipay checks that this did not
// change.
func (s *Sim) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Calls returns the accepted calls of method, oldest first.
func (s *Sim) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Sent returns the template messages delivered, oldest first.
func (s *Sim) Sent() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.sent...)
}

// IssueCode returns a fresh app_auth_code, as the redirect after merchant
// app authAppID (of user userID) authorized appID carries.
func (s *Sim) IssueCode(appID, authAppID, userID string) string {
	code := "code-" + random()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = grant{appID: appID, authAppID: authAppID, userID: userID}
	return code
}

// SetTokenLifetimes sets expires_in and re_expires_in (seconds) of the
// tokens issued from now on.
func (s *Sim) SetTokenLifetimes(expiresIn, reExpiresIn int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiresIn, s.reExpiresIn = expiresIn, reExpiresIn
}

// Tokens returns the live app_auth_token and app_refresh_token issued for
// authAppID's authorization of appID, if any.
func (s *Sim) Tokens(appID, authAppID string) (token, refresh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, g := range s.tokens {
		if g.appID == appID && g.authAppID == authAppID {
			token = t
		}
	}
	for t, g := range s.refresh {
		if g.appID == appID && g.authAppID == authAppID {
			refresh = t
		}
	}
	return token, refresh
}

// Revoke ends authAppID's authorization of appID, as a merchant
// cancelling it: its tokens stop working.
func (s *Sim) Revoke(appID, authAppID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(appID, authAppID)
}

func (s *Sim) revokeLocked(appID, authAppID string) {
	for _, m := range []map[string]grant{s.tokens, s.refresh} {
		for t, g := range m {
			if g.appID == appID && g.authAppID == authAppID {
				delete(m, t)
			}
		}
	}
}

// Subscribe records userID's subscription to templateID.
func (s *Sim) Subscribe(userID, templateID string, sub Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscriptions[userID] == nil {
		s.subscriptions[userID] = map[string]Subscription{}
	}
	s.subscriptions[userID][templateID] = sub
}

// issueLocked issues a new pair of tokens for g.
func (s *Sim) issueLocked(g grant) (token, refresh string) {
	s.revokeLocked(g.appID, g.authAppID)
	token, refresh = "token-"+random(), "refresh-"+random()
	s.tokens[token], s.refresh[refresh] = g, g
	return token, refresh
}

func random() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
