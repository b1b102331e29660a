package loadtest

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"OKEmpty", nil, 50, 0},
		{"OKOne", ms(7), 99, 7 * time.Millisecond},
		{"OKMedianOdd", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"OKMedianEven", ms(1, 2, 3, 4), 50, 2 * time.Millisecond}, // nearest rank: ceil(2) = 2nd
		{"OKP90Of100", ms(hundred...), 90, 90 * time.Millisecond},
		{"OKP99Of100", ms(hundred...), 99, 99 * time.Millisecond},
		{"OKP100", ms(1, 5, 9), 100, 9 * time.Millisecond},
		{"OKP0IsMin", ms(3, 4), 0, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()

	t.Run("OKAllAcked", func(t *testing.T) {
		t.Parallel()
		var rs []Result
		for i := 1; i <= 10; i++ {
			rs = append(rs, Result{Outcome: OutcomeSuccess, Latency: time.Duration(11-i) * time.Millisecond, Done: time.Duration(i) * time.Millisecond})
		}
		s := Summarize("new", rs, 2*time.Second)
		if s.Sent != 10 || s.Acked != 10 || len(s.Failed) != 0 {
			t.Fatalf("sent %d acked %d failed %v, want 10 10 none", s.Sent, s.Acked, s.Failed)
		}
		if s.PerSecond != 5 {
			t.Errorf("per second %v, want 5", s.PerSecond)
		}
		if s.P50 != 5 || s.P90 != 9 || s.P99 != 10 || s.Max != 10 {
			t.Errorf("p50 %v p90 %v p99 %v max %v, want 5 9 10 10", s.P50, s.P90, s.P99, s.Max)
		}
		if s.FirstFailureS != nil || s.LastFailureS != nil || s.AckedAfter != 0 {
			t.Errorf("failure window set without failures: %+v", s)
		}
	})

	t.Run("OKFailuresThenSuccess", func(t *testing.T) {
		t.Parallel()
		sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
		rs := []Result{
			{Outcome: OutcomeSuccess, Latency: time.Millisecond, Done: sec(1)},
			{Outcome: "503", Latency: time.Second, Done: sec(2)},
			{Outcome: OutcomeConnErr, Latency: time.Millisecond, Done: sec(3)},
			{Outcome: "503", Latency: time.Second, Done: sec(2.5)},
			{Outcome: OutcomeSuccess, Latency: 3 * time.Millisecond, Done: sec(4)},
			{Outcome: OutcomeSuccess, Latency: 2 * time.Millisecond, Done: sec(5)},
			{Outcome: OutcomeUnsent}, // interrupted: not counted
		}
		s := Summarize("new", rs, 4*time.Second)
		if s.Sent != 6 || s.Acked != 3 {
			t.Fatalf("sent %d acked %d, want 6 3", s.Sent, s.Acked)
		}
		if s.Failed["503"] != 2 || s.Failed[OutcomeConnErr] != 1 || len(s.Failed) != 2 {
			t.Errorf("failed %v, want 503: 2, conn_error: 1", s.Failed)
		}
		if s.FirstFailureS == nil || *s.FirstFailureS != 2 || *s.LastFailureS != 3 || s.AckedAfter != 2 {
			t.Errorf("failure window %v..%v then %d acked, want 2..3 then 2", s.FirstFailureS, s.LastFailureS, s.AckedAfter)
		}
		// Latencies are the acknowledged deliveries' only.
		if s.Max != 3 || s.P50 != 2 {
			t.Errorf("max %v p50 %v, want 3 2 (acknowledged only)", s.Max, s.P50)
		}
		text := s.String()
		for _, want := range []string{"6 sent", "acknowledged 3, failed 3", "503: 2", "conn_error: 1", "then 2 acknowledged"} {
			if !strings.Contains(text, want) {
				t.Errorf("String() = %q, want it to contain %q", text, want)
			}
		}
	})

	t.Run("OKNothing", func(t *testing.T) {
		t.Parallel()
		s := Summarize("resend", nil, 0)
		if s.Sent != 0 || s.PerSecond != 0 || s.P99 != 0 {
			t.Errorf("empty summary %+v", s)
		}
	})
}

func TestCheckOK(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    Check
		want bool
	}{
		{"OK", Check{Acked: 3, Stored: 3, StoredUnacked: 2}, true},
		{"ErrMissing", Check{Acked: 3, Stored: 2, Missing: 1}, false},
		{"ErrDoubled", Check{Acked: 3, Stored: 2, Doubled: 1}, false},
		{"ErrEffectMissing", Check{Acked: 3, Stored: 3, EffectsMissing: 1}, false},
		{"ErrEffectDoubled", Check{Acked: 3, Stored: 3, EffectsDoubled: 1}, false},
	} {
		if got := tc.c.OK(); got != tc.want {
			t.Errorf("%s: OK() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
