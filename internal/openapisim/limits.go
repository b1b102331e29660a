package openapisim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"hash/fnv"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Sub-codes the simulator answers that no Alipay source shows. The
// gateway must not rely on them: it matches Alipay's code (40005, 40004)
// and keeps the sub_code as it came.
const (
	// SubCodeCallLimited is the sub_code of a call over an app's rate
	// limit (code 40005, "Call Limited"). Made up: no official sub_code
	// found (the name is the one Taobao's open platform uses; no Alipay SDK,
	// doc or mirror shows a sub_code for 40005).
	SubCodeCallLimited = "isp.call-limited"
	// SubCodeNotSubscribed is the sub_code (code 40004) of a send to a
	// user without a "1" subscription to the template, when
	// RequireSubscription is on. Made up: no official sub_code found.
	SubCodeNotSubscribed = "USER_NOT_SUBSCRIBED"
)

// errCallLimited is the answer to a call over its app's rate limit.
var errCallLimited = errorAnswer{Code: "40005", Msg: "Call Limited", SubCode: SubCodeCallLimited, SubMsg: "调用频次超限"}

// codeMsgs are the msg Alipay answers with each common code (40005's
// "Call Limited" only corroborated: docs/template-message-batches.md).
var codeMsgs = map[string]string{
	"20000": "Service Currently Unavailable", "20001": "Insufficient Token Permissions",
	"40001": "Missing Required Arguments", "40002": "Invalid Arguments", "40003": "Insufficient Conditions",
	"40004": "Business Failed", "40005": "Call Limited", "40006": "Insufficient Permissions",
}

// New returns a simulator that serves no port of its own: it is an
// http.Handler, for a process that listens itself (cmd/openapisim). Start
// is New with a loopback test server; Close releases hanging calls either
// way.
func New(cfg Config) *Sim {
	s := &Sim{
		cfg: cfg, apps: map[string]App{}, closing: make(chan struct{}),
		faults: map[string][]Fault{}, codes: map[string]grant{}, tokens: map[string]grant{}, refresh: map[string]grant{},
		expiresIn: 31536000, reExpiresIn: 32140800, subscriptions: map[string]map[string]Subscription{},
	}
	for _, a := range cfg.Apps {
		s.apps[a.ID] = a
	}
	return s
}

// ServeHTTP answers an OpenAPI call, as the gateway URL (any path) does.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r) }

// limits is the simulator's load and failure state: rate limits, failure
// fractions, failed users, counters and send times. Its fields are
// guarded by Sim.mu.
type limits struct {
	buckets     map[string]*bucket     // app id -> its rate limit
	fractions   map[string]fraction    // method -> its failure fraction
	attempts    map[string]int         // method + "\x00" + recipient -> calls so far
	failUsers   map[string]errorAnswer // to_user_id or to_open_id -> the answer every send gets
	requireSub  bool                   // send refuses a user without a "1" subscription
	rateLimited int                    // calls answered 40005 by a rate limit
	injected    int                    // calls answered with a fault (queued or chosen by a fraction)
	byMethod    map[string]int         // accepted calls per method
	sendTimes   []time.Time            // when each message was delivered, in order
	sigs        map[sigKey]string      // answer signatures, by key and text
	sigsMu      sync.Mutex             // guards sigs alone: signing runs outside mu
	noSigCache  bool                   // sign every answer afresh (for the benchmark)
}

// bucket is a token bucket: perSecond tokens a second, up to burst.
type bucket struct {
	perSecond, burst, tokens float64
	at                       time.Time
}

// take takes a token at now, if there is one.
func (b *bucket) take(now time.Time) bool {
	b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.perSecond)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// fraction is a share of a method's calls that fail with a fault.
type fraction struct {
	share float64
	fault Fault
}

// sigKey is what an answer signature depends on.
type sigKey struct {
	key  *rsa.PrivateKey
	text string
}

// maxSigs bounds the signature cache: answers that carry fresh tokens are
// all different, and are signed afresh once it is full.
const maxSigs = 4096

// SetRateLimit limits the calls of app appID (any method, every merchant
// it calls for) to perSecond a second, in bursts of up to burst (at least
// 1): a token bucket, full at first. A call over the limit is answered
// code 40005 "Call Limited" (sub_code SubCodeCallLimited), signed like
// every answer, and is neither a call (Calls, Stats.Calls) nor a delivered
// message (Sent); it counts in Stats.RateLimited. perSecond <= 0 removes
// the limit.
func (s *Sim) SetRateLimit(appID string, perSecond float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lim.buckets == nil {
		s.lim.buckets = map[string]*bucket{}
	}
	if perSecond <= 0 {
		delete(s.lim.buckets, appID)
		return
	}
	b := float64(max(burst, 1))
	s.lim.buckets[appID] = &bucket{perSecond: perSecond, burst: b, tokens: b, at: time.Now()}
}

// SetFailure makes a share (0 to 1) of the calls of method do f instead of
// answering normally. Which calls is chosen by Chosen from the call's
// recipient (to_user_id, to_open_id, user_id or open_id, whichever comes
// first; empty when there is none) and its attempt number: the same
// recipients fail on the same attempts in every run. A fault queued with
// Fail goes first. share <= 0 removes the method's failure; a later call
// replaces it. A code without a msg gets the one Alipay answers with it.
//
// With f.Deliver the call is carried out (a send is delivered, and shows
// in Sent) before f is answered: "delivered, answer lost" when f answers
// 20000, hangs or answers an HTTP error.
func (s *Sim) SetFailure(method string, share float64, f Fault) {
	if f.BadSign {
		otherKey()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lim.fractions == nil {
		s.lim.fractions = map[string]fraction{}
	}
	if share <= 0 {
		delete(s.lim.fractions, method)
		return
	}
	if f.Code != "" && f.Msg == "" {
		f.Msg = codeMsgs[f.Code]
	}
	s.lim.fractions[method] = fraction{share: math.Min(share, 1), fault: f}
}

// Chosen reports whether SetFailure with share fails the call of a
// recipient that is its attempt-th (from 1) call of the method: the top
// 53 bits of FNV-1a-64(recipient, 0, attempt in decimal) over 2^53, below
// share.
func Chosen(recipient string, attempt int, share float64) bool {
	h := fnv.New64a()
	_, _ = h.Write([]byte(recipient))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(strconv.AppendInt(nil, int64(attempt), 10))
	return float64(h.Sum64()>>11)/(1<<53) < share
}

// FailUser makes every send to user (a to_user_id or to_open_id) answer
// code (with its usual msg) and subCode, signed, after the request and
// its app_auth_token are checked. An empty code undoes it.
func (s *Sim) FailUser(user, code, subCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lim.failUsers == nil {
		s.lim.failUsers = map[string]errorAnswer{}
	}
	if code == "" {
		delete(s.lim.failUsers, user)
		return
	}
	s.lim.failUsers[user] = errorAnswer{Code: code, Msg: codeMsgs[code], SubCode: subCode, SubMsg: subCode}
}

// RequireSubscription makes send refuse, from now on, a user who has no
// "1" subscription (Subscribe) to the message's template: code 40004 with
// sub_code SubCodeNotSubscribed. A subscription is not used up by a send,
// onetime or not.
func (s *Sim) RequireSubscription(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim.requireSub = on
}

// SendTimes returns when each template message was delivered, oldest
// first (as many as Sent has).
func (s *Sim) SendTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.lim.sendTimes...)
}

// Stats is what the simulator has counted.
type Stats struct {
	// Requests is every HTTP request, accepted or not.
	Requests int `json:"requests"`
	// Calls is the accepted calls (their signature verified, not rate
	// limited), and ByMethod the same per method.
	Calls    int            `json:"calls"`
	ByMethod map[string]int `json:"calls_by_method"`
	// Sent is the template messages delivered.
	Sent int `json:"sent"`
	// RateLimited is the calls answered 40005 by SetRateLimit.
	RateLimited int `json:"rate_limited"`
	// Faults is the accepted calls answered with a fault (Fail or
	// SetFailure), FailUser's and RequireSubscription's refusals aside.
	Faults int `json:"faults"`
}

// Stats returns the counters; it copies no call or message.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	by := make(map[string]int, len(s.lim.byMethod))
	for m, n := range s.lim.byMethod {
		by[m] = n
	}
	return Stats{Requests: s.requests, Calls: len(s.calls), ByMethod: by, Sent: len(s.sent),
		RateLimited: s.lim.rateLimited, Faults: s.lim.injected}
}

// admit takes a verified call of method in: false when its app is over
// its rate limit (the call is then not recorded); else it records the
// call and returns the fault it is to answer with (none: the zero Fault).
func (s *Sim) admit(method string, p url.Values, biz map[string]any) (Fault, bool) {
	now := time.Now()
	appID := p.Get("app_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.lim.buckets[appID]; b != nil && !b.take(now) {
		s.lim.rateLimited++
		return Fault{}, false
	}
	c := Call{Method: method, AppID: appID}
	if !s.cfg.Lean {
		c.Params, c.Biz = p, biz
	}
	s.calls = append(s.calls, c)
	if s.lim.byMethod == nil {
		s.lim.byMethod = map[string]int{}
	}
	s.lim.byMethod[method]++

	recipient := recipientOf(biz)
	if s.lim.attempts == nil {
		s.lim.attempts = map[string]int{}
	}
	k := method + "\x00" + recipient
	s.lim.attempts[k]++
	if q := s.faults[method]; len(q) > 0 {
		s.faults[method] = q[1:]
		s.lim.injected++
		return q[0], true
	}
	if fr, set := s.lim.fractions[method]; set && Chosen(recipient, s.lim.attempts[k], fr.share) {
		s.lim.injected++
		return fr.fault, true
	}
	return Fault{}, true
}

// recipientOf is the user a call is about, for SetFailure.
func recipientOf(biz map[string]any) string {
	for _, k := range []string{"to_user_id", "to_open_id", "user_id", "open_id"} {
		if v := str(biz, k); v != "" {
			return v
		}
	}
	return ""
}

// refuseLocked is send's answer for m other than delivery, if any:
// FailUser's error, or RequireSubscription's.
func (s *Sim) refuseLocked(m Message) (errorAnswer, bool) {
	for _, u := range []string{m.ToUserID, m.ToOpenID} {
		if e, failed := s.lim.failUsers[u]; failed && u != "" {
			return e, true
		}
	}
	if s.lim.requireSub {
		user := m.ToUserID
		if user == "" {
			user = m.ToOpenID
		}
		if s.subscriptions[user][m.UserTemplateID].State != "1" {
			return errBusiness.sub(SubCodeNotSubscribed, "用户未订阅该模板"), true
		}
	}
	return errorAnswer{}, false
}

// deliverLocked records m as delivered, now.
func (s *Sim) deliverLocked(m Message) {
	s.sent = append(s.sent, m)
	s.lim.sendTimes = append(s.lim.sendTimes, time.Now())
}

// sign returns key's SHA256withRSA signature of text. PKCS#1 v1.5 is
// deterministic (rand only blinds), so a signature is made once per
// answer text and key: every success answer is the same text.
func (s *Sim) sign(key *rsa.PrivateKey, text []byte) []byte {
	if s.lim.noSigCache {
		return rawSign(key, text)
	}
	k := sigKey{key: key, text: string(text)}
	s.lim.sigsMu.Lock()
	sig, found := s.lim.sigs[k]
	s.lim.sigsMu.Unlock()
	if found {
		return []byte(sig)
	}
	b := rawSign(key, text)
	s.lim.sigsMu.Lock()
	if s.lim.sigs == nil {
		s.lim.sigs = map[sigKey]string{}
	}
	if len(s.lim.sigs) < maxSigs {
		s.lim.sigs[k] = string(b)
	}
	s.lim.sigsMu.Unlock()
	return b
}

func rawSign(key *rsa.PrivateKey, text []byte) []byte {
	sum := sha256.Sum256(text)
	sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	return sig
}
