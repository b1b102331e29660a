package reconcile

import (
	"fmt"
	"time"
)

// detector notices the outages this replica sees, one observation per
// poll. The replica is in an outage while a health check fails (the
// database does not answer, a WebSocket channel is down: the readiness
// checks) or while it refuses deliveries and accepts none (a key or
// certificate mistake answers every genuine notification 403). An outage
// that lasted at least min is reported once it ends: the notifications
// refused or never delivered meanwhile may be lost for good once Alipay
// stops retrying, so the gateway asks Alipay then.
type detector struct {
	min time.Duration
	// since is when the outage under way began; zero while healthy.
	since time.Time
	// last is the last observation that saw an outage: the one reported
	// ended no earlier than this.
	last time.Time
	why  string
	// accepted and refused are the delivery counters at the last
	// observation.
	accepted, refused float64
	primed            bool
}

// observe takes one observation at now: health is the first failing health
// check (nil when all pass), accepted and refused the intake's counters.
// It returns the description of an outage of at least min that has just
// ended, or "".
func (d *detector) observe(now time.Time, health error, accepted, refused float64) string {
	refusing := d.primed && refused > d.refused && accepted == d.accepted
	d.accepted, d.refused, d.primed = accepted, refused, true
	bad := health != nil || refusing
	if bad {
		d.last = now
	}
	switch {
	case bad && d.since.IsZero():
		d.since = now
		d.why = "deliveries refused and none accepted"
		if health != nil {
			d.why = "not ready: " + health.Error()
		}
		return ""
	case bad || d.since.IsZero():
		return ""
	}
	took := now.Sub(d.since)
	d.since = time.Time{}
	if took < d.min {
		return ""
	}
	return fmt.Sprintf("an outage of %s ended (%s)", took.Round(time.Second), d.why)
}
