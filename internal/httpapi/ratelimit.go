package httpapi

import (
	"sync"
	"time"
)

// RateLimit is a token bucket: on average one request every Every, at most
// Burst at once.
type RateLimit struct {
	Every time.Duration
	Burst int
}

// The authorization callback's default limits, per replica: each client 10
// a minute (5 at once), and 60 a minute (20 at once) from all clients
// together, for at most maxLimitedClients clients at a time. A merchant
// opens the callback once per authorization.
var (
	defaultCallbackClientLimit = RateLimit{Every: 6 * time.Second, Burst: 5}
	defaultCallbackGlobalLimit = RateLimit{Every: time.Second, Burst: 20}
)

const maxLimitedClients = 4096

// Why a limiter refused a request.
const (
	limitedClient  = "client_rate"  // this client's bucket is empty
	limitedGlobal  = "global_rate"  // the bucket of all clients is empty
	limitedClients = "clients_full" // too many clients are being tracked
)

// limiter limits requests per client key and in all, in process. A client
// whose bucket has filled up again is forgotten: it is the same as a new
// one, so memory holds only the clients seen within the last refill time
// (Burst × Every), and never more than max of them. It is safe for
// concurrent use.
type limiter struct {
	client, global RateLimit
	max            int
	now            func() time.Time

	mu      sync.Mutex
	all     bucket
	clients map[string]*bucket
	swept   time.Time // the last sweep of full buckets
}

// bucket is a token bucket's level at a time.
type bucket struct {
	tokens float64
	at     time.Time
}

// newLimiter returns a limiter of client and global, tracking at most max
// clients; now is the clock (time.Now when nil).
func newLimiter(client, global RateLimit, max int, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	t := now()
	return &limiter{client: client, global: global, max: max, now: now,
		all: bucket{tokens: float64(global.Burst), at: t}, clients: map[string]*bucket{}, swept: t}
}

// level returns b's tokens at t under r.
func (r RateLimit) level(b bucket, t time.Time) float64 {
	if r.Every <= 0 {
		return float64(r.Burst)
	}
	return min(float64(r.Burst), b.tokens+float64(t.Sub(b.at))/float64(r.Every))
}

// wait returns how long a bucket holding tokens (under 1) takes to hold 1.
func (r RateLimit) wait(tokens float64) time.Duration {
	return time.Duration((1 - tokens) * float64(r.Every))
}

// full returns how long an untouched bucket takes to fill from empty.
func (r RateLimit) full() time.Duration { return time.Duration(r.Burst) * r.Every }

// allow takes a token for one request of key, from key's bucket and the
// global one. It returns true when both had one; otherwise false, why
// (limitedClient, limitedGlobal, limitedClients) and how long to wait
// before trying again, and it takes nothing.
func (l *limiter) allow(key string) (bool, string, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	if t.Sub(l.swept) >= l.client.full() {
		l.sweep(t)
	}
	c, known := l.clients[key]
	cb := bucket{tokens: float64(l.client.Burst), at: t}
	if known {
		cb.tokens = l.client.level(*c, t)
	}
	if cb.tokens < 1 {
		return false, limitedClient, l.client.wait(cb.tokens)
	}
	all := l.global.level(l.all, t)
	if all < 1 {
		return false, limitedGlobal, l.global.wait(all)
	}
	if !known && len(l.clients) >= l.max {
		// Full: forget the clients whose buckets have filled up, at most
		// once a second; refuse a new client while none has.
		if t.Sub(l.swept) >= time.Second {
			l.sweep(t)
		}
		if len(l.clients) >= l.max {
			return false, limitedClients, time.Second
		}
	}
	l.all = bucket{tokens: all - 1, at: t}
	if !known {
		c = &bucket{}
		l.clients[key] = c
	}
	*c = bucket{tokens: cb.tokens - 1, at: t}
	return true, "", 0
}

// sweep forgets the clients whose buckets are full again at t.
func (l *limiter) sweep(t time.Time) {
	for k, b := range l.clients {
		if l.client.level(*b, t) >= float64(l.client.Burst) {
			delete(l.clients, k)
		}
	}
	l.swept = t
}

// tracked returns how many clients the limiter holds.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
