package notify

import (
	"encoding/json"
	"time"
)

// The records of the gateway's calls to Alipay's OpenAPI (internal/outbound)
// that the store keeps: template message sends, and token refreshes.

// Send statuses. Only a signed, verified success from Alipay is "sent".
const (
	SendPending = "pending" // recorded, the call not finished (or the process died during it)
	SendSent    = "sent"    // Alipay answered success
	SendFailed  = "failed"  // Alipay answered a business error: not sent
	SendUnknown = "unknown" // the call failed or its answer could not be trusted: maybe sent
)

// TemplateSend is one template message send, as recorded.
type TemplateSend struct {
	ID             int64           `json:"id"`
	AppID          string          `json:"app_id"`
	AuthAppID      string          `json:"auth_app_id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Request        json.RawMessage `json:"request"` // the message as received (never a token)
	RequestHash    string          `json:"-"`
	Status         string          `json:"status"`
	Code           string          `json:"alipay_code"`
	Msg            string          `json:"alipay_msg"`
	SubCode        string          `json:"alipay_sub_code"`
	SubMsg         string          `json:"alipay_sub_msg"`
	Error          string          `json:"error"`
	LatencyMS      int64           `json:"latency_ms"`
	CreatedAt      time.Time       `json:"created_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
}

// DueRefresh is an authorization claimed for a token refresh. EventAt and
// EventNotifyID identify the grant it was claimed under.
type DueRefresh struct {
	AppID              string
	AuthAppID          string
	UserID             string
	SealedRefreshToken []byte
	EventAt            int64
	EventNotifyID      string
}

// Refreshed is what a refresh stores: the new tokens, sealed, their
// lifetimes from At, and the refresh's place in the authorization's
// ordering.
type Refreshed struct {
	UserID             string
	SealedAuthToken    []byte
	SealedRefreshToken []byte
	At                 time.Time
	ExpiresIn          int64 // seconds; 0 when unknown
	ReExpiresIn        int64 // seconds; 0 when unknown
	// EventAt (ms since the epoch) orders the refresh with the
	// authorization's grants and cancellations: the time the refresh call
	// started less the refresher's clock skew allowance. The authorization's event
	// time becomes EventAt, or the refreshed grant's plus 1 ms when that is
	// later.
	EventAt int64
}
