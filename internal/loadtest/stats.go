package loadtest

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Outcomes of one delivery besides an HTTP status.
const (
	OutcomeSuccess = "success"    // 200 with body "success": acknowledged
	OutcomeConnErr = "conn_error" // no HTTP answer (refused, reset, timeout)
	OutcomeUnsent  = ""           // never sent (the run was interrupted)
)

// Result is one delivery.
type Result struct {
	Outcome string        // OutcomeSuccess, OutcomeConnErr, or the HTTP status ("503", "200 fail", ...)
	Latency time.Duration // from the request's start to its answer's end
	Done    time.Duration // when it ended, since the pass started
}

// Summary is one pass: what was sent, what was acknowledged, how fast.
type Summary struct {
	Pass      string         `json:"pass"`
	Sent      int            `json:"sent"`
	Acked     int            `json:"acked"`
	Failed    map[string]int `json:"failed"` // by outcome: HTTP status or conn_error
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"per_second"` // acknowledged notifications per second
	// Latencies of the acknowledged deliveries, in ms.
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// When failures happened (seconds since the pass started), and how
	// many deliveries were acknowledged after the last one: "fail for a
	// while, then success".
	FirstFailureS *float64 `json:"first_failure_s,omitempty"`
	LastFailureS  *float64 `json:"last_failure_s,omitempty"`
	AckedAfter    int      `json:"acked_after_last_failure"`
	// With -cpu: CPU time per acknowledged notification (per refused
	// request, in a forged pass).
	CPU *CPUUse `json:"cpu,omitempty"`
	// A forged pass: the requests refused with an HTTP status, and the size
	// of a body. PerSecond counts refusals.
	Refused   int `json:"refused,omitempty"`
	BodyBytes int `json:"body_bytes,omitempty"`
}

// Summarize sums up a pass's results over elapsed.
func Summarize(pass string, results []Result, elapsed time.Duration) Summary {
	s := Summary{Pass: pass, Failed: map[string]int{}, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	var last time.Duration = -1
	for _, r := range results {
		switch r.Outcome {
		case OutcomeUnsent:
			continue
		case OutcomeSuccess:
			s.Acked++
			lat = append(lat, r.Latency)
		default:
			s.Failed[r.Outcome]++
			at := r.Done.Seconds()
			if s.FirstFailureS == nil || at < *s.FirstFailureS {
				s.FirstFailureS = &at
			}
			if r.Done > last {
				last = r.Done
			}
		}
		s.Sent++
	}
	if last >= 0 {
		at := last.Seconds()
		s.LastFailureS = &at
		for _, r := range results {
			if r.Outcome == OutcomeSuccess && r.Done > last {
				s.AckedAfter++
			}
		}
	}
	if elapsed > 0 {
		s.PerSecond = float64(s.Acked) / elapsed.Seconds()
	}
	slices.Sort(lat)
	s.P50, s.P90, s.P99 = ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99))
	if len(lat) > 0 {
		s.Max = ms(lat[len(lat)-1])
	}
	return s
}

// percentile returns the nearest-rank p-th percentile of sorted (0 when
// empty): the smallest value at least p% of the values are at or below.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*100) / 100 }

// String is the summary for people.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d sent in %.2fs: %.0f notifications/s acknowledged; acknowledged %d, failed %d",
		s.Pass, s.Sent, s.Seconds, s.PerSecond, s.Acked, s.Sent-s.Acked)
	if len(s.Failed) > 0 {
		b.WriteString(" (" + CountsString(s.Failed) + ")")
	}
	fmt.Fprintf(&b, "\n%s: latency p50 %.1fms p90 %.1fms p99 %.1fms max %.1fms", s.Pass, s.P50, s.P90, s.P99, s.Max)
	if s.FirstFailureS != nil {
		fmt.Fprintf(&b, "\n%s: failures from %.1fs to %.1fs, then %d acknowledged", s.Pass, *s.FirstFailureS, *s.LastFailureS, s.AckedAfter)
	}
	if s.Refused > 0 {
		fmt.Fprintf(&b, "\n%s: %d refused (bodies of %d bytes): %.0f refusals/s", s.Pass, s.Refused, s.BodyBytes, s.PerSecond)
		if s.CPU != nil {
			fmt.Fprintf(&b, "\n%s: CPU per refused request: %s", s.Pass, s.CPU)
		}
		return b.String()
	}
	if s.CPU != nil {
		fmt.Fprintf(&b, "\n%s: CPU per acknowledged notification: %s", s.Pass, s.CPU)
	}
	return b.String()
}

// CountsString renders counts as "k n, k n" sorted by key.
func CountsString[K comparable](m map[K]int) string {
	keys := make([]string, 0, len(m))
	byName := map[string]int{}
	for k, n := range m {
		name := fmt.Sprint(k)
		keys = append(keys, name)
		byName[name] = n
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, byName[k])
	}
	return strings.Join(parts, ", ")
}
