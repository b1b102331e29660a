// Package notify holds the gateway's domain, and nothing else:
//
//   - the verified notification, and the outcome of its delivery
//     (notify.go);
//   - the application errors and their codes, which the HTTP layer maps to
//     statuses in one table (error.go);
//   - the changes a notification can make to business state, each ordered
//     by its event (store.go);
//   - the registry that maps a msg_method to the pure handler deciding that
//     change (registry.go, decide.go, handler_*.go);
//   - the records of the gateway's own calls to Alipay that the store keeps
//     (outbound.go).
//
// Handlers never touch the database: they decode biz_content into a typed
// change (Registry.Decide), which the store (internal/postgres) applies in
// the transaction that records the notification. Verification is
// internal/alipay's, sealing internal/seal's, redaction internal/redact's,
// the ops API's read models internal/view's, and the intake's logging and
// metrics internal/intake's.
package notify

import (
	"context"
	"time"
)

// Status is where a stored notification ended.
type Status string

// The statuses a notification can end with.
const (
	StatusApplied   Status = "applied"   // it changed business state
	StatusStale     Status = "stale"     // newer state already existed: kept, changed nothing
	StatusUnhandled Status = "unhandled" // no handler for its method: kept and acknowledged
	StatusFailed    Status = "failed"    // verified but unusable: kept with the error, acknowledged
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusApplied, StatusStale, StatusUnhandled, StatusFailed:
		return true
	}
	return false
}

// Channel names how a notification reached the gateway.
const (
	ChannelHTTP      = "http"
	ChannelWebSocket = "websocket"
)

// Notification is one verified notification, decoded and ready to store.
type Notification struct {
	AppID    string // the ISV app the notification is for
	NotifyID string // unique per AppID; resends carry the same one
	// Method is msg_method, or notify_type for the older-style
	// notifications that carry none (open_app_auth_notify).
	Method string
	// UTCTimestamp is utc_timestamp in milliseconds since the epoch (for the
	// older style: notify_time), or 0 when the notification has none.
	UTCTimestamp int64
	// BizContent is biz_content as UTF-8 text, decrypted when it arrived
	// encrypted, with secrets (tokens) replaced by a placeholder.
	BizContent string
	// Params holds every parameter as received, converted to UTF-8, with
	// the same secrets redacted in biz_content.
	Params map[string]string
	// Secrets holds the values taken out of biz_content by Redact, for the
	// handler that needs them. They are never stored in clear or logged.
	Secrets map[string]string
	// Encrypted reports that biz_content arrived encrypted (encrypt_type).
	Encrypted bool
	Channel   string
	// ContentForm says which signed-content form verified ("v1", "v2", ...).
	ContentForm string
	// ContentDigest is the SHA-256 of the signed content that verified
	// (alipay.Match.Digest): the inbox keeps one notification per digest,
	// so the same signed content under another notify_id has no second
	// effect. Nil for a notification stored before digests were kept.
	ContentDigest []byte
	// CertSN is the SN of the Alipay cert that verified it (cert mode).
	CertSN     string
	ReceivedAt time.Time
	// Failure, when set, means the notification is verified but cannot be
	// used as it is (for example encrypted with no key configured): it is
	// stored with StatusFailed and this error, and no handler runs.
	Failure string
}

// Outcome is what happened to a delivery.
type Outcome struct {
	Status    Status // the stored notification's status
	Duplicate bool   // the notification was already stored: nothing changed
	Error     string // the reason for StatusFailed
	// DeliveryCount is how many times this notification has been delivered,
	// this delivery included.
	DeliveryCount int
	// ReplayOf, when set, is the notify_id under which the inbox already
	// holds this delivery's signed content: it is a replay (the same
	// signature under another notify_id), stored nowhere and changing
	// nothing; Duplicate is set, and Status and DeliveryCount are those of
	// the notification it replays.
	ReplayOf string
	// Foreign reports a notification kept as failed because the entity it
	// is about (a mini-app, an order) belongs to another ISV app.
	Foreign bool
	// Pruned reports a notification whose signed content was stored once
	// and has since been pruned (Retention): stored nowhere again and
	// changing nothing; Duplicate is set.
	Pruned bool
}

// Inbox records decided notifications and applies their changes. The
// postgres package implements it, and its group-commit Batcher.
type Inbox interface {
	// Ingest stores d and applies its change in one transaction, and
	// returns once that transaction is committed. It returns an
	// EUNAVAILABLE *Error when the database cannot be reached, and an
	// ECONFLICT one when d's notify_id is stored with other signed content.
	Ingest(ctx context.Context, d Decided) (Outcome, error)
}

// Arrivals is told of the notifications on their way to an Inbox: being
// read and verified. A batching Inbox (postgres.Batcher) lets a batch wait
// for them, and commits it at once when none is coming.
type Arrivals interface {
	// Arriving counts one more notification on its way.
	Arriving()
	// Arrived counts one off: it reached Ingest, or it was refused.
	Arrived()
}

// Label names a delivery's outcome for metrics: the stored status,
// "duplicate" for a notification that was stored already, "replay" for a
// signed content stored under another notify_id, "pruned" for one stored
// and pruned since, "foreign" for a notification about another app's
// entity.
func (o Outcome) Label() string {
	switch {
	case o.ReplayOf != "":
		return "replay"
	case o.Pruned:
		return "pruned"
	case o.Duplicate:
		return "duplicate"
	case o.Foreign:
		return "foreign"
	}
	return string(o.Status)
}
