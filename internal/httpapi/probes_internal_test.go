package httpapi

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestReadyLog_Changed: a line for each change of the probe's answer, at
// most one every readyLogEvery; a change held back is logged once that time
// has passed, if it still holds.
func TestReadyLog_Changed(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &readyLog{log: zerolog.Nop()}
	for i, step := range []struct {
		reason string
		at     time.Duration
		want   bool
	}{
		{"", 0, false},                                // ready from the start: nothing to say
		{"database down", 0, true},                    // the first failure
		{"database down", 5 * time.Second, false},     // the same reason
		{"database timeout", 10 * time.Second, false}, // a new reason, too soon
		{"database timeout", readyLogEvery, true},     // still so a minute after the last line
		{"database timeout", 2 * readyLogEvery, false},
		{"", 2*readyLogEvery + time.Second, true}, // ready again
		{"", 3 * readyLogEvery, false},
	} {
		if got := l.changed(step.reason, t0.Add(step.at)); got != step.want {
			t.Errorf("step %d (%q at %v): changed %v; want %v", i, step.reason, step.at, got, step.want)
		}
	}
}
