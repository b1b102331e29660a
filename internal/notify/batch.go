package notify

import (
	"encoding/json"
	"strconv"
	"time"
)

// The records of bulk template messages (issue 20) that the store keeps: a
// batch, its recipients, and what one attempt to send to a recipient came
// to. The sender is internal/batchsend; the queue is the recipients table.

// Batch statuses. A running batch is sent; a paused one is not, until it
// is resumed (StopReason says why when the sender paused it); cancelled, stopped (StopReason says why) and finished are
// final, and each writes the batch's EventTemplateBatchFinished event.
const (
	BatchRunning   = "running"
	BatchPaused    = "paused"
	BatchCancelled = "cancelled"
	BatchStopped   = "stopped"
	BatchFinished  = "finished"
)

// Recipient statuses. Sending is internal (a replica claimed it, the call
// is in flight). Unknown is final until an operator asks for the batch's
// unknown recipients to be sent again: the call may have reached Alipay.
const (
	RecipientPending   = "pending"
	RecipientSending   = "sending"
	RecipientSent      = "sent"
	RecipientFailed    = "failed"
	RecipientSkipped   = "skipped"
	RecipientUnknown   = "unknown"
	RecipientCancelled = "cancelled"
)

// RecipientStatuses returns every recipient status, in the order the
// counts list them.
func RecipientStatuses() []string {
	return []string{RecipientPending, RecipientSending, RecipientSent, RecipientFailed, RecipientSkipped,
		RecipientUnknown, RecipientCancelled}
}

// Why a batch was stopped (TemplateBatch.StopReason): every recipient left
// would fail the same way.
const (
	// StopAuthorizationCancelled: the merchant's authorization of the ISV
	// app is cancelled or its token refused (Alipay's 20001
	// aop.invalid-app-auth-token and the like).
	StopAuthorizationCancelled = "authorization_cancelled"
	// StopAuthorizationExpired: the merchant's token expired. No longer
	// set: an expired token pauses the batch (PauseTokenExpired); kept for
	// batches stopped so before.
	StopAuthorizationExpired = "authorization_expired"
	// StopTemplateIllegal: Alipay refused the template
	// (USER_TEMPLATE_ILLEGAL) with data shared by every recipient.
	StopTemplateIllegal = "template_illegal"
	// StopTemplateKeywords: the shared data does not fit the template
	// (USER_TEMPLATE_LACK_KEYWORD, USER_KEYWORD_LENGTH_ERROR).
	StopTemplateKeywords = "template_keywords"
	// StopInsufficientPermissions: Alipay's 40006, the app may not call
	// the method; or 20001 for the ISV's own mini-app.
	StopInsufficientPermissions = "insufficient_permissions"
	// StopAppRefused: Alipay refused the app's request itself (its
	// signature, app id or cert SNs): the configuration is wrong.
	StopAppRefused = "app_refused"
)

// Why the sender paused a running batch (TemplateBatch.StopReason while it
// is paused; empty when an operator paused it): what it waits for may come
// right, and resume sends the rest. Resume clears it.
const (
	// PauseTokenExpired: the merchant's token expired (as stored, or
	// Alipay's 20001 aop.app-auth-token-time-out): the refresher, or a new
	// authorization, may bring a good one.
	PauseTokenExpired = "merchant_token_expired"
	// PauseNoToken: the merchant's authorization holds no token.
	PauseNoToken = "merchant_token_missing"
	// PauseUnverifiedRefusal: an answer whose signature did not verify
	// refused the batch as a whole (what would stop it if it were signed:
	// the app's request refused, the token, the template). It may be
	// Alipay's (which does not sign what it refuses before knowing the
	// app) or anyone's between: the recipient is unknown, the batch waits
	// for an operator.
	PauseUnverifiedRefusal = "unverified_refusal"
)

// EventTemplateBatchFinished is the event of a batch that ended: finished,
// cancelled or stopped (its data says which).
const EventTemplateBatchFinished = "template_message_batch.finished"

// BatchEventNotifyID is the events.notify_id of batch id's event: one per
// batch, written once (the events' unique key).
func BatchEventNotifyID(id int64) string {
	return "template_message_batch:" + strconv.FormatInt(id, 10)
}

// TemplateBatch is one batch, as recorded.
type TemplateBatch struct {
	ID             int64
	AppID          string
	AuthAppID      string
	IdempotencyKey string
	RequestHash    string
	UserTemplateID string
	Page           string
	// Data is the shared template data, a compact JSON object; nil when
	// every recipient has its own.
	Data       json.RawMessage
	Precheck   bool
	Status     string
	StopReason string
	Total      int
	CreatedAt  time.Time
	FinishedAt *time.Time
}

// NewRecipient is a recipient of a batch being created: ToUserID or
// ToOpenID, and its own Data (nil: the batch's).
type NewRecipient struct {
	ToUserID string
	ToOpenID string
	Data     json.RawMessage
}

// ClaimedRecipient is a recipient claimed for an attempt: status sending,
// Attempt its number (from 1). BatchID and Seq (its place in the upload,
// from 1) identify it.
type ClaimedRecipient struct {
	BatchID  int64
	Seq      int
	ToUserID string
	ToOpenID string
	Data     json.RawMessage // its own data; nil: the batch's
	Attempt  int
}

// RecipientOutcome is what an attempt came to, to record. Status is
// RecipientSent, RecipientFailed, RecipientSkipped, RecipientUnknown, or
// RecipientPending to try again at NextAt.
type RecipientOutcome struct {
	BatchID int64
	Seq     int
	Attempt int
	Status  string
	NextAt  time.Time
	Code    string
	SubCode string
	SubMsg  string
	Error   string
	Latency time.Duration
}

// BatchCounts are a batch's recipients by status.
type BatchCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Sending   int `json:"sending"`
	Sent      int `json:"sent"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Unknown   int `json:"unknown"`
	Cancelled int `json:"cancelled"`
}

// Add counts n recipients of status.
func (c *BatchCounts) Add(status string, n int) {
	switch status {
	case RecipientPending:
		c.Pending += n
	case RecipientSending:
		c.Sending += n
	case RecipientSent:
		c.Sent += n
	case RecipientFailed:
		c.Failed += n
	case RecipientSkipped:
		c.Skipped += n
	case RecipientUnknown:
		c.Unknown += n
	case RecipientCancelled:
		c.Cancelled += n
	}
}

// BatchEvent is the payload of a batch's EventTemplateBatchFinished.
type BatchEvent struct {
	BatchID         int64          `json:"batch_id"`
	AppID           string         `json:"app_id"`
	AuthAppID       string         `json:"auth_app_id"`
	UserTemplateID  string         `json:"user_template_id"`
	Status          string         `json:"status"`
	StopReason      string         `json:"stop_reason"`
	Counts          BatchCounts    `json:"counts"`
	FailedBySubCode map[string]int `json:"failed_by_sub_code"`
	CreatedAt       time.Time      `json:"created_at"`
	FinishedAt      time.Time      `json:"finished_at"`
}

// Data is e as an event's payload.
func (e BatchEvent) Data() json.RawMessage {
	if e.FailedBySubCode == nil {
		e.FailedBySubCode = map[string]int{}
	}
	return mustJSON(e)
}

// ExpiredClaims are the claims of one batch that ExpireClaims made
// unknown.
type ExpiredClaims struct {
	BatchID int64
	AppID   string
	N       int
}

// BatchStats are the batch sender's gauges, as the store reads them.
type BatchStats struct {
	// Pending is, by ISV app, the recipients of running and paused
	// batches still to send (pending or sending).
	Pending map[string]int
	// Idle is, by ISV app, the longest time a running batch with
	// recipients left has gone without a send finishing (since it was
	// created, when none has).
	Idle map[string]time.Duration
}
