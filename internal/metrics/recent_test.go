package metrics

import (
	"testing"
	"time"
)

func TestRecent_Window(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)
	m := New()
	m.recent = newRecent(func() time.Time { return at })
	step := func(d time.Duration) { at = at.Add(d) }

	t.Run("OK", func(t *testing.T) {
		m.Refused("bad_signature")
		m.Accepted("x", "duplicate")
		m.Accepted("x", "applied") // a new row: the database counts it
		step(30 * time.Minute)
		m.Refused("bad_signature")
		m.Refused("unknown_app")
		step(45 * time.Minute) // the first minute is now 75 minutes old
		h, d := m.Recent(time.Hour), m.Recent(24*time.Hour)
		if h.Refused["bad_signature"] != 1 || h.Refused["unknown_app"] != 1 || len(h.Repeated) != 0 {
			t.Fatalf("last hour %+v", h)
		}
		if d.Refused["bad_signature"] != 2 || d.Repeated["duplicate"] != 1 || d.Repeated["applied"] != 0 {
			t.Fatalf("last day %+v", d)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		step(24 * time.Hour) // every bucket is older than a day, or reused
		m.Refused("body_too_large")
		d := m.Recent(48 * time.Hour)
		if len(d.Refused) != 1 || d.Refused["body_too_large"] != 1 {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("Nil", func(t *testing.T) {
		var none *Metrics
		none.Refused("x")
		if c := none.Recent(time.Hour); len(c.Refused) != 0 {
			t.Fatal(c)
		}
	})
}
