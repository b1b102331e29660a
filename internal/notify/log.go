package notify

import (
	"time"

	"github.com/rs/zerolog"
)

// Label names a delivery's outcome for metrics: the stored status,
// "duplicate" for a notification that was stored already, "replay" for a
// signed content stored under another notify_id, "foreign" for a
// notification about another app's entity.
func (o Outcome) Label() string {
	switch {
	case o.ReplayOf != "":
		return "replay"
	case o.Duplicate:
		return "duplicate"
	case o.Foreign:
		return "foreign"
	}
	return string(o.Status)
}

// Reporter is what a channel tells about each delivery (the metrics).
type Reporter interface {
	Intake(channel string, d time.Duration)
	Refused(reason string)
	Accepted(method, outcome string)
}

// Report tells r about one delivery of n (nil when it was refused before it
// was a notification) on channel.
func Report(r Reporter, channel string, n *Notification, out Outcome, err error, took time.Duration) {
	r.Intake(channel, took)
	if err != nil {
		r.Refused(ErrorReason(err))
		return
	}
	r.Accepted(n.Method, out.Label())
}

// OutageLogger returns log limited to 10 lines a second, for deliveries
// refused because the database is unavailable: an outage under load would
// otherwise log one error line per delivery. The lines it drops are still
// counted by the refusal metric (reason database_unavailable).
func OutageLogger(log zerolog.Logger) zerolog.Logger {
	return log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})
}

// LogOutcome ends the one log line a delivery gets, whatever its channel:
// outcome success with the status and delivery count, or fail with the
// reason. It never logs a secret: errors carry no sign, token or key.
func LogOutcome(ev *zerolog.Event, out Outcome, err error) {
	if err != nil {
		ev.Str("outcome", "fail").Str("reason", ErrorReason(err)).Str("error", ClipTo(err.Error(), 1024)).Msg("notification refused")
		return
	}
	ev = ev.Str("outcome", "success").Str("status", string(out.Status)).Bool("duplicate", out.Duplicate).
		Int("delivery_count", out.DeliveryCount)
	if out.Error != "" {
		ev = ev.Str("reason", out.Error)
	}
	if out.ReplayOf != "" {
		ev.Str("replay_of", out.ReplayOf).Msg("notification accepted: its signed content is stored under another notify_id, so it changes nothing")
		return
	}
	ev.Msg("notification accepted")
}
