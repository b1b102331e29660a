package reconcile

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDetector_Observe(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	down := errors.New("database unavailable")
	t.Run("OKNotReady", func(t *testing.T) {
		d := detector{min: 5 * time.Minute}
		steps := []struct {
			at     time.Duration
			health error
			want   string
		}{{0, nil, ""}, {time.Minute, down, ""}, {3 * time.Minute, down, ""}, {7 * time.Minute, nil, "an outage of 6m0s ended (not ready: database unavailable)"},
			{8 * time.Minute, nil, ""}}
		for _, s := range steps {
			if got := d.observe(t0.Add(s.at), s.health, 1, 0); got != s.want {
				t.Fatalf("at %s: %q; want %q", s.at, got, s.want)
			}
		}
	})
	t.Run("OKRefusingOnly", func(t *testing.T) {
		d := detector{min: 5 * time.Minute}
		d.observe(t0, nil, 10, 0)
		for i := 1; i <= 6; i++ { // refusals grow, nothing accepted
			if got := d.observe(t0.Add(time.Duration(i)*time.Minute), nil, 10, float64(i)); got != "" {
				t.Fatalf("%d: %q", i, got)
			}
		}
		// Accepting again: it is over.
		if got := d.observe(t0.Add(7*time.Minute), nil, 11, 6); !strings.Contains(got, "6m0s") || !strings.Contains(got, "refused") {
			t.Fatalf("%q", got)
		}
	})
	t.Run("OKShortOutageIgnored", func(t *testing.T) {
		d := detector{min: 5 * time.Minute}
		d.observe(t0, down, 0, 0)
		if got := d.observe(t0.Add(time.Minute), nil, 0, 0); got != "" {
			t.Fatalf("%q", got)
		}
	})
	t.Run("OKRefusalsWithAcceptsAreNoOutage", func(t *testing.T) {
		d := detector{min: time.Minute}
		for i := range 10 { // forged requests refused while genuine ones are accepted
			if d.observe(t0.Add(time.Duration(i)*time.Minute), nil, float64(i), float64(2*i)); !d.since.IsZero() {
				t.Fatalf("%d: in an outage", i)
			}
		}
	})
}
