package view

import (
	"encoding/json"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// TemplateBatch is a batch of template messages with its progress
// (GET /v1/template-message-batches/{id}).
type TemplateBatch struct {
	ID             int64              `json:"id"`
	AppID          string             `json:"app_id"`
	AuthAppID      string             `json:"auth_app_id"`
	UserTemplateID string             `json:"user_template_id"`
	Page           string             `json:"page"`
	Precheck       bool               `json:"precheck"`
	Status         string             `json:"status"`
	StopReason     string             `json:"stop_reason"`
	CreatedAt      time.Time          `json:"created_at"`
	FinishedAt     *time.Time         `json:"finished_at"`
	Counts         notify.BatchCounts `json:"counts"`
	// FailedBySubCode counts the failed recipients by Alipay's sub_code
	// (its code when it gave none; "retries_exhausted" when the retries
	// ran out).
	FailedBySubCode map[string]int `json:"failed_by_sub_code"`
	// RatePerSecond is the sends that finished in the last minute (or
	// since the batch was created, when that is shorter), per second.
	RatePerSecond float64 `json:"rate_per_second"`
	// ETASeconds estimates the time left: what is left to send over the
	// current rate (the configured one while none is measured); null when
	// nothing is left or the batch is not running.
	ETASeconds *float64 `json:"eta_seconds"`
	// Replayed marks the answer to a creation with an Idempotency-Key
	// already used for the same request: the batch it made then.
	Replayed bool `json:"replayed,omitempty"`
	// Requeued is, in retry-unknown's answer, how many unknown recipients
	// were made pending again.
	Requeued *int `json:"requeued,omitempty"`

	// IdempotencyKey and RequestHash identify the creating request.
	IdempotencyKey string `json:"-"`
	RequestHash    string `json:"-"`
}

// BatchFilter selects batches: newest first, after the cursor After.
type BatchFilter struct {
	AppID  string
	Status string
	After  string
	Limit  int
}

// BatchRecipient is one recipient of a batch and what became of it.
type BatchRecipient struct {
	Row      int             `json:"row"` // its place in the upload, from 1
	ToUserID string          `json:"to_user_id,omitempty"`
	ToOpenID string          `json:"to_open_id,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"` // its own data; none when it takes the batch's
	Status   string          `json:"status"`
	Attempts int             `json:"attempts"`
	// NextAttemptAt is when a pending recipient is due.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	Code          string     `json:"alipay_code"`
	SubCode       string     `json:"alipay_sub_code"`
	SubMsg        string     `json:"alipay_sub_msg"`
	Error         string     `json:"error"`
	LatencyMS     *int       `json:"latency_ms"`
	FinishedAt    *time.Time `json:"finished_at"`
}

// RecipientFilter selects a batch's recipients, in upload order after the
// cursor After; Status, when set, keeps those of that status.
type RecipientFilter struct {
	BatchID int64
	Status  string
	After   string
	Limit   int
}

// BatchProgress is a batch as the console's list shows it: its progress
// without the counts by status that cost a read of every recipient.
type BatchProgress struct {
	ID             int64
	AppID          string
	AuthAppID      string
	UserTemplateID string
	Status         string
	StopReason     string
	Total          int
	Left           int // pending or being sent
	Unknown        int // may have reached Alipay: sent again only on retry-unknown
	CreatedAt      time.Time
	FinishedAt     *time.Time
}

// Done is how many recipients are done with (sent, failed, skipped,
// unknown or cancelled).
func (p *BatchProgress) Done() int { return p.Total - p.Left }

// Percent is Done as a whole percentage of Total (rounded down: 100 only
// when none is left).
func (p *BatchProgress) Percent() int {
	if p.Total == 0 {
		return 100
	}
	return p.Done() * 100 / p.Total
}
