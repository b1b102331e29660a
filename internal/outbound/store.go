package outbound

import (
	"context"
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

// The records the Store keeps are the domain's (notify), so that the
// storage needs no import of this package; here they have the names this
// package's code reads best with.
type (
	// Send is one template message send, as recorded.
	Send = notify.TemplateSend
	// DueRefresh is an authorization claimed for a token refresh.
	DueRefresh = notify.DueRefresh
	// Refreshed is what a refresh stores.
	Refreshed = notify.Refreshed
)

// Send statuses. Only a signed, verified success from Alipay is "sent".
const (
	SendPending = notify.SendPending
	SendSent    = notify.SendSent
	SendFailed  = notify.SendFailed
	SendUnknown = notify.SendUnknown
)
