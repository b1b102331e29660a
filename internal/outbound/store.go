package outbound

import (
	"context"
	"encoding/json"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Store is what the outbound side keeps; the postgres package implements
// it. Every method returns an EUNAVAILABLE *notify.Error when the database
// cannot be reached.
type Store interface {
	// AuthToken returns the sealed app_auth_token of authAppID's
	// authorization of appID. It returns an ENOTFOUND *notify.Error when
	// no such authorization is recorded, and an ECONFLICT one when it is
	// cancelled or holds no token.
	AuthToken(ctx context.Context, appID, authAppID string) ([]byte, error)

	// StartSend records s as pending and sets its ID and CreatedAt. When
	// s.IdempotencyKey is already recorded for s.AppID it records nothing
	// and returns the send recorded under it: two calls of one app with
	// one key never both start. Keys are scoped to the app: another app's
	// send under the same key is another send.
	StartSend(ctx context.Context, s *Send) (prior *Send, err error)
	// SendByKey returns the send recorded under an idempotency key for
	// appID, or an ENOTFOUND *notify.Error.
	SendByKey(ctx context.Context, appID, key string) (*Send, error)
	// FinishSend records the outcome of a started send (its Status,
	// Alipay's codes, Error, Latency) and sets FinishedAt.
	FinishSend(ctx context.Context, s *Send) error

	// SaveGrant records a grant obtained through the authorization flow,
	// ordered by (At, NotifyID) with the notifications' grants and
	// cancellations exactly as a notification's grant is. It reports
	// whether it changed the authorization.
	SaveGrant(ctx context.Context, g notify.AuthGrant) (applied bool, err error)

	// ClaimRefresh picks one authorization of one of appIDs whose token or
	// refresh token expires before dueBefore, that is authorized and holds
	// a refresh token, and that no attempt claimed in the last retryAfter;
	// it marks it attempted now and returns it. Replicas claiming at once
	// get different authorizations (FOR UPDATE SKIP LOCKED). It returns
	// nil when none is due.
	ClaimRefresh(ctx context.Context, appIDs []string, dueBefore time.Time, retryAfter time.Duration) (*DueRefresh, error)
	// CompleteRefresh stores refreshed tokens in d's authorization and
	// moves its ordering past the grant refreshed, to r.EventAt (so that
	// no grant older than the refresh applies after it), unless the
	// authorization changed since d was claimed (a cancellation or a new
	// grant arrived): then it changes nothing and reports false.
	CompleteRefresh(ctx context.Context, d *DueRefresh, r Refreshed) (applied bool, err error)
	// FailRefresh records why refreshing d failed; the tokens stay.
	FailRefresh(ctx context.Context, d *DueRefresh, reason string) error
}

// Send statuses. Only a signed, verified success from Alipay is "sent".
const (
	SendPending = "pending" // recorded, the call not finished (or the process died during it)
	SendSent    = "sent"    // Alipay answered success
	SendFailed  = "failed"  // Alipay answered a business error: not sent
	SendUnknown = "unknown" // the call failed or its answer could not be trusted: maybe sent
)

// Send is one template message send, as recorded.
type Send struct {
	ID             int64           `json:"id"`
	AppID          string          `json:"app_id"`
	AuthAppID      string          `json:"auth_app_id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Request        TemplateMessage `json:"request"`
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

// RequestJSON is the request as stored: the message without any token.
func (s *Send) RequestJSON() ([]byte, error) { return json.Marshal(s.Request) }

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
	// started less RefresherConfig.ClockSkew. The authorization's event
	// time becomes EventAt, or the refreshed grant's plus 1 ms when that is
	// later.
	EventAt int64
}
