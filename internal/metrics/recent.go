package metrics

import (
	"sync"
	"time"
)

// recentMinutes is how far back Recent remembers: a day.
const recentMinutes = 24 * 60

// Recent remembers, minute by minute for the last day, what this process
// answered that the database does not keep: the deliveries it refused
// (answered fail: they write nothing) by reason, and the ones it
// acknowledged without a new row (a duplicate or a replay) by outcome.
// The ops console shows it; Prometheus has the same counts, across
// replicas, as alipay_gateway_refusals_total and
// alipay_gateway_notifications_total. It is this replica's only, and
// starts empty with the process.
type Recent struct {
	mu      sync.Mutex
	now     func() time.Time
	start   time.Time
	buckets [recentMinutes]recentBucket
}

type recentBucket struct {
	minute int64 // Unix minute the counts are of
	counts map[string]int
}

func newRecent(now func() time.Time) *Recent {
	return &Recent{now: now, start: now()}
}

// add counts one key ("refused:bad_signature", "accepted:duplicate") now.
func (r *Recent) add(key string) {
	if r == nil {
		return
	}
	m := r.now().Unix() / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &r.buckets[m%recentMinutes]
	if b.minute != m || b.counts == nil {
		b.minute, b.counts = m, map[string]int{}
	}
	b.counts[key]++
}

// window sums, by key, the counts of the minutes within d before now
// (the current minute included), and says since when this process has
// counted.
func (r *Recent) window(d time.Duration) (map[string]int, time.Time) {
	out := map[string]int{}
	if r == nil {
		return out, time.Time{}
	}
	now := r.now().Unix() / 60
	oldest := now - int64(d/time.Minute) + 1
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.buckets {
		if b.minute >= oldest && b.minute <= now {
			for k, n := range b.counts {
				out[k] += n
			}
		}
	}
	return out, r.start
}

// RecentCounts is what this process refused and acknowledged without a
// new row in a recent window.
type RecentCounts struct {
	// Refused is by reason (bad_signature, unknown_app, ...).
	Refused map[string]int
	// Repeated is by outcome: duplicate (a resend), replay (its signed
	// content stored under another notify_id), pruned.
	Repeated map[string]int
	// Since is when this process started counting: a window reaching
	// before it counts less than its length.
	Since time.Time
}

// Recent returns this process's recent counts over the last d (at most a
// day); empty on a nil *Metrics.
func (m *Metrics) Recent(d time.Duration) RecentCounts {
	c := RecentCounts{Refused: map[string]int{}, Repeated: map[string]int{}}
	if m == nil {
		return c
	}
	all, since := m.recent.window(min(d, recentMinutes*time.Minute))
	c.Since = since
	for k, n := range all {
		if reason, ok := cutPrefix(k, "refused:"); ok {
			c.Refused[reason] += n
		} else if outcome, ok := cutPrefix(k, "accepted:"); ok {
			c.Repeated[outcome] += n
		}
	}
	return c
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// recentAccepted counts outcome in Recent when it made no new row.
func (m *Metrics) recentAccepted(outcome string) {
	switch outcome {
	case "duplicate", "replay", "pruned":
		m.recent.add("accepted:" + outcome)
	}
}
