package intake

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// OutageLogger returns log limited to 10 lines a second, for deliveries
// refused because the database is unavailable: an outage under load would
// otherwise log one error line per delivery. The lines it drops are still
// counted by the refusal metric (reason database_unavailable).
func OutageLogger(log zerolog.Logger) zerolog.Logger {
	return log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})
}

// logLine writes the one line a delivery gets, whatever its channel:
// outcome success with the status and delivery count, or fail with the
// reason. It never logs a secret: errors carry no sign, token or key, and
// what a refused delivery says of itself is clipped.
func (p *Pipeline) logLine(channel string, named Named, out notify.Outcome, err error,
	fields func(*zerolog.Event) *zerolog.Event, replyErr error, took time.Duration) {
	code := notify.ErrorCode(err)
	log := p.log
	if code == notify.EUNAVAILABLE {
		log = p.outage
	}
	ev := log.Info()
	switch {
	case code == notify.EUNAVAILABLE || code == notify.EINTERNAL:
		ev = log.Error()
	case err != nil || replyErr != nil || out.ReplayOf != "" || out.Foreign:
		ev = log.Warn()
	}
	ev = ev.Str("channel", channel)
	if fields != nil {
		ev = fields(ev)
	}
	ev = ev.Dur("duration", took).Str("notify_id", notify.Clip(named.NotifyID)).Str("app_id", notify.Clip(named.AppID)).
		Str("msg_method", notify.Clip(named.Method))
	if named.ContentForm != "" {
		ev = ev.Str("content_form", named.ContentForm)
	}
	if named.CertSN != "" {
		ev = ev.Str("cert_sn", named.CertSN)
	}
	if replyErr != nil {
		ev = ev.AnErr("reply_error", replyErr)
	}
	if err != nil {
		ev.Str("outcome", "fail").Str("reason", notify.ErrorReason(err)).Str("error", notify.ClipTo(err.Error(), 1024)).Msg("notification refused")
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
	if out.Pruned {
		ev.Bool("pruned", true).Msg("notification accepted: it was stored and has been pruned since (retention), so it changes nothing")
		return
	}
	ev.Msg("notification accepted")
}
