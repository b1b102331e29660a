package httpapi

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLimiter_Allow(t *testing.T) {
	t.Parallel()
	client := RateLimit{Every: 6 * time.Second, Burst: 5} // 10 a minute
	global := RateLimit{Every: time.Second, Burst: 8}
	// step is a request (key) or a pause (wait), and what allow answers.
	type step struct {
		key   string
		wait  time.Duration
		n     int // the request n times (1 when 0)
		ok    bool
		why   string
		retry time.Duration // when refused
	}
	for _, c := range []struct {
		name  string
		max   int
		steps []step
	}{
		{"OKBurst", 10, []step{{key: "a", n: 5, ok: true}}},
		{"ErrClientBurst", 10, []step{
			{key: "a", n: 5, ok: true},
			{key: "a", why: limitedClient, retry: 6 * time.Second},
		}},
		{"OKRefill", 10, []step{
			{key: "a", n: 5, ok: true},
			{wait: 3 * time.Second},
			{key: "a", why: limitedClient, retry: 3 * time.Second},
			{wait: 3 * time.Second},
			{key: "a", ok: true},
			{key: "a", why: limitedClient, retry: 6 * time.Second},
		}},
		{"OKClientsApart", 10, []step{
			{key: "a", n: 5, ok: true},
			{key: "b", n: 3, ok: true},
			{key: "a", why: limitedClient, retry: 6 * time.Second},
		}},
		{"ErrGlobal", 10, []step{
			{key: "a", n: 5, ok: true},
			{key: "b", n: 3, ok: true},
			{key: "c", why: limitedGlobal, retry: time.Second},
			{wait: time.Second},
			{key: "c", ok: true},
		}},
		{"OKRefusedTakesNothing", 10, []step{
			// A request refused by the global bucket leaves the client's.
			{key: "a", n: 5, ok: true},
			{key: "b", n: 3, ok: true},
			{key: "b", n: 3, why: limitedGlobal, retry: time.Second},
			{wait: 2 * time.Second},
			{key: "b", n: 2, ok: true},
		}},
		{"ErrClientsFull", 2, []step{
			{key: "a", ok: true},
			{key: "b", ok: true},
			{key: "c", why: limitedClients, retry: time.Second},
			{key: "a", ok: true}, // known clients go on
			// a and b fill up again within 30 s and are forgotten.
			{wait: 30 * time.Second},
			{key: "c", ok: true},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{t: time.Unix(1767225600, 0)}
			l := newLimiter(client, global, c.max, clock.now)
			for i, s := range c.steps {
				if s.wait > 0 {
					clock.advance(s.wait)
					continue
				}
				for j := 0; j < max(s.n, 1); j++ {
					ok, why, retry := l.allow(s.key)
					if ok != s.ok || why != s.why || !ok && retry != s.retry {
						t.Fatalf("step %d (%s #%d): allow = %v %q %v; want %v %q %v", i, s.key, j+1, ok, why, retry, s.ok, s.why, s.retry)
					}
				}
			}
		})
	}
}

// TestLimiter_Memory: the clients held are those seen within a refill time,
// never more than the cap, however many come.
func TestLimiter_Memory(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1767225600, 0)}
	l := newLimiter(RateLimit{Every: 6 * time.Second, Burst: 5}, RateLimit{Every: time.Nanosecond, Burst: 1 << 30}, 100, clock.now)
	t.Run("OKIdleForgotten", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			l.allow(fmt.Sprint("10.0.0.", i))
		}
		if n := l.tracked(); n != 50 {
			t.Fatalf("%d tracked", n)
		}
		clock.advance(30 * time.Second) // 5 tokens × 6 s: all full again
		l.allow("10.0.1.1")
		if n := l.tracked(); n != 1 {
			t.Fatalf("%d tracked after they went idle; want the new one only", n)
		}
	})
	t.Run("OKCapped", func(t *testing.T) {
		for i := 0; i < 10000; i++ {
			if i%100 == 0 {
				clock.advance(time.Second)
			}
			l.allow(fmt.Sprint("client-", i))
		}
		if n := l.tracked(); n > 100 {
			t.Fatalf("%d tracked; the cap is 100", n)
		}
	})
}

func TestLimiter_Concurrent(t *testing.T) {
	t.Parallel()
	l := newLimiter(RateLimit{Every: time.Hour, Burst: 5}, RateLimit{Every: time.Hour, Burst: 1000}, 100, nil)
	var allowed atomic.Int64
	testkit.Concurrently(50, func(int) {
		if ok, _, _ := l.allow("same"); ok {
			allowed.Add(1)
		}
	})
	if ok := allowed.Load(); ok != 5 {
		t.Fatalf("%d of 50 concurrent requests allowed; want the burst, 5", ok)
	}
}
