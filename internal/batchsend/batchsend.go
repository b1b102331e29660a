// Package batchsend sends bulk subscription template messages (issue 20):
// a batch is one template to up to 100,000 recipients, stored whole before
// anything is sent (Admin.Create), then sent by the replicas' Senders from
// a durable queue in Postgres, each recipient at most once, at a rate per
// ISV app shared by the replicas.
//
// The queue is the webhook dispatcher's (internal/webhook) in shape, not a
// second kind: a Sender claims a few due recipients at a time FOR UPDATE
// SKIP LOCKED (the store's ClaimRecipients), keeps up to Concurrency calls
// in flight, records the outcomes in bulk (RecordRecipients), and schedules
// a retry with the same exponential backoff and jitter
// (notify.ExpBackoff). It differs where a template message must: a claim
// whose replica died is not attempted again once its lease ends, as a
// webhook is, but recorded unknown (ExpireClaims), because the message may
// have reached the user and Alipay gives nothing to check it with. Only an
// operator's retry-unknown sends it again.
//
// Retries are automatic only when the call surely did not reach Alipay's
// business system: Alipay's 40005 (call limited) and a failure before the
// request was written (outbound.NotSent). Alipay's 20000, a timeout after
// the request was written, an HTTP 5xx, an answer that cannot be trusted:
// unknown. A refusal is recorded per recipient with Alipay's sub_code; a
// refusal every recipient would meet (the merchant's authorization is
// cancelled, the template with shared data is refused, 40006) stops the
// batch with a reason, and one that may mend (the merchant's token
// expired) pauses it. A refusal whose signature does not verify
// (outbound.BusinessError.Verified false) changes nothing that cannot be
// taken back: its recipient is unknown, and one that would stop the batch
// pauses it instead. Every call (pre-check queries too) takes a token
// from the app's sending bucket ("openapi:<app_id>:send",
// postgres.DB.TakeTokens), refilled at the app's rate by the database's
// clock, so that the rate holds across replicas.
package batchsend

import (
	"context"
	"math"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Store is what batches need of the database (postgres.DB). Every method
// returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
type Store interface {
	RunningBatches(ctx context.Context, appIDs []string) ([]*notify.TemplateBatch, error)
	ClaimRecipients(ctx context.Context, id int64, limit int) ([]notify.ClaimedRecipient, error)
	RecordRecipients(ctx context.Context, outcomes []notify.RecipientOutcome) (int, error)
	RenewClaim(ctx context.Context, id int64, seq, attempt int) (string, bool, error)
	ExpireClaims(ctx context.Context, olderThan time.Duration) ([]notify.ExpiredClaims, error)
	FinishBatch(ctx context.Context, id int64) (bool, error)
	StopBatch(ctx context.Context, id int64, reason string) (bool, error)
	PauseBatchFor(ctx context.Context, id int64, reason string) (bool, error)
	BatchStats(ctx context.Context) (*notify.BatchStats, error)
}

// AdminStore is what the ops API's batch endpoints need of the database
// (postgres.DB): each returns an ENOTFOUND *notify.Error for an unknown
// batch, an ECONFLICT one for a transition its status does not allow, an
// EINVALID one for a cursor it did not make, and an EUNAVAILABLE one when
// the database cannot be reached.
type AdminStore interface {
	CreateBatch(ctx context.Context, b *notify.TemplateBatch, recipients []notify.NewRecipient) (*notify.TemplateBatch, error)
	BatchByKey(ctx context.Context, appID, key string) (*notify.TemplateBatch, error)
	Batch(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Batches(ctx context.Context, f view.BatchFilter) ([]*view.TemplateBatch, string, error)
	BatchRecipients(ctx context.Context, f view.RecipientFilter) ([]*view.BatchRecipient, string, error)
	PauseBatch(ctx context.Context, id int64) error
	ResumeBatch(ctx context.Context, id int64) error
	CancelBatch(ctx context.Context, id int64) error
	RetryUnknown(ctx context.Context, id int64) (int, error)
}

// Bucket is the token bucket shared by the replicas (postgres.DB): see
// postgres.DB.TakeTokens. Each method returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
type Bucket interface {
	// TakeTokens takes up to want tokens from the bucket named name,
	// refilled at rate a second up to burst; rate <= 0 is no limit. It
	// returns how many it granted and, when fewer than want, how long
	// until the next.
	TakeTokens(ctx context.Context, name string, rate, burst float64, want int) (int, time.Duration, error)
	// ReturnTokens gives back n tokens taken and not used.
	ReturnTokens(ctx context.Context, name string, n int) error
}

// Outbound makes the calls (outbound.Service): see its methods for their
// errors.
type Outbound interface {
	AppIDs() []string
	AppID(appID string) (string, error)
	MerchantToken(ctx context.Context, appID, authAppID string) (string, error)
	SendBatchMessage(ctx context.Context, appID, token string, m outbound.BatchMessage) (time.Duration, error)
	Subscribed(ctx context.Context, appID, token, user, templateID string) (bool, time.Duration, error)
	StaleAfter() time.Duration
}

// BucketName is the name of app appID's bucket of the batches' calls to
// Alipay's OpenAPI (sends and pre-check queries). Reconciliation has its
// own ("openapi:<app_id>:reconcile"): each bucket refills at its own
// configured rate, so the app's calls stay within the sum of the two.
func BucketName(appID string) string { return "openapi:" + appID + ":send" }

// Rates are the calls per second each ISV app may make to Alipay, across
// replicas (TEMPLATE_SEND_RATE): Apps by app id, Default for the others;
// 0 (or less) is no limit.
type Rates struct {
	Default float64
	Apps    map[string]float64
}

// Of returns appID's rate.
func (r Rates) Of(appID string) float64 {
	if v, ok := r.Apps[appID]; ok {
		return v
	}
	return r.Default
}

// burst is the bucket's size at rate: a tenth of a second of calls, so
// that no second holds much more than the rate even when the bucket was
// full; at least 2, the calls of a pre-checked recipient (the query and
// the send), which are taken together.
func burst(rate float64) float64 { return math.Max(2, rate/10) }

// chunk is the most tokens a Sender takes at once at rate (limited) or
// the most recipients it claims at once (concurrency, no limit).
func chunk(rate float64, concurrency int) int {
	if rate <= 0 {
		return concurrency
	}
	return max(1, min(concurrency, int(math.Ceil(rate/10))))
}
