package batchsend

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Admin serves the ops API's batch endpoints: it creates batches (checked
// whole, stored whole) and reads and steers them. The Senders, on whichever
// replicas, do the sending.
type Admin struct {
	Store    AdminStore
	Outbound Outbound
	// Rates are the configured rates, for the estimate of the time left
	// while no rate is measured yet.
	Rates Rates
	// MaxRecipients caps a batch (DefaultMaxRecipients when 0).
	MaxRecipients int
	Logger        zerolog.Logger
}

// Create checks r whole and stores it as a running batch, every recipient
// pending, or nothing. With an idempotency key (checked as the single
// send's), a second call for the same app and request returns the batch of
// the first (replayed true) and stores nothing, even when the merchant's
// authorization has been cancelled since: the key is looked up before it.
//
// It returns the batch, and: an EINVALID *notify.Error for a bad key or
// template field, or app_id missing among several apps; a *RowsError
// (EINVALID) naming the first bad recipients; ENOTFOUND for an unknown app
// or a merchant that never authorized it; ECONFLICT for a cancelled or
// expired authorization, or a key used for another request; and the
// store's EUNAVAILABLE.
func (a *Admin) Create(ctx context.Context, r *Request, key string) (*view.TemplateBatch, bool, error) {
	if err := outbound.CheckKey(key); err != nil {
		return nil, false, err
	}
	appID, err := a.Outbound.AppID(r.AppID)
	if err != nil {
		return nil, false, err
	}
	max := a.MaxRecipients
	if max <= 0 {
		max = DefaultMaxRecipients
	}
	c, err := check(r, appID, max)
	if err != nil {
		return nil, false, err
	}
	if key != "" {
		// A retry of a batch already created answers it, whatever has
		// happened since (the merchant's authorization cancelled, say).
		prior, err := a.Store.BatchByKey(ctx, appID, key)
		if err == nil {
			return a.replay(ctx, prior, &c.batch, key)
		}
		if notify.ErrorCode(err) != notify.ENOTFOUND {
			return nil, false, err
		}
	}
	if r.AuthAppID != "" {
		// Refused now rather than stopped at the first claim.
		if _, err := a.Outbound.MerchantToken(ctx, appID, r.AuthAppID); err != nil {
			return nil, false, err
		}
	}
	c.batch.IdempotencyKey = key
	prior, err := a.Store.CreateBatch(ctx, &c.batch, c.recipients)
	if err != nil {
		return nil, false, err
	}
	if prior != nil { // created meanwhile by a concurrent call with the key
		return a.replay(ctx, prior, &c.batch, key)
	}
	a.Logger.Info().Int64("batch_id", c.batch.ID).Str("app_id", appID).Str("auth_app_id", r.AuthAppID).
		Int("recipients", c.batch.Total).Bool("precheck", r.Precheck).Msg("template message batch created")
	v, err := a.Batch(ctx, c.batch.ID)
	return v, false, err
}

// replay answers a batch request whose idempotency key recorded prior: the
// batch as it is now (Replayed) when b is the same request, an ECONFLICT
// *notify.Error when it is another; and the store's errors.
func (a *Admin) replay(ctx context.Context, prior, b *notify.TemplateBatch, key string) (*view.TemplateBatch, bool, error) {
	if prior.RequestHash != b.RequestHash {
		return nil, false, notify.Errorf(notify.ECONFLICT, "idempotency_key_reused", "Idempotency-Key %q was used for a different batch (%d)", key, prior.ID)
	}
	v, err := a.Batch(ctx, prior.ID)
	if err != nil {
		return nil, false, err
	}
	v.Replayed = true
	return v, true, nil
}

// Batch returns batch id with its progress and an estimate of the time
// left. It returns the store's ENOTFOUND and EUNAVAILABLE.
func (a *Admin) Batch(ctx context.Context, id int64) (*view.TemplateBatch, error) {
	v, err := a.Store.Batch(ctx, id)
	if err != nil {
		return nil, err
	}
	a.estimate(v)
	return v, nil
}

// estimate sets v's ETASeconds: what is left over the measured rate (the
// configured one while none is measured).
func (a *Admin) estimate(v *view.TemplateBatch) {
	left := v.Counts.Pending + v.Counts.Sending
	if v.Status != notify.BatchRunning || left == 0 {
		return
	}
	rate := v.RatePerSecond
	if rate <= 0 {
		rate = a.Rates.Of(v.AppID)
	}
	if rate <= 0 {
		return
	}
	eta := float64(left) / rate
	v.ETASeconds = &eta
}

// Batches lists batches newest first, a page at a time. It returns the
// store's EINVALID (bad cursor) and EUNAVAILABLE.
func (a *Admin) Batches(ctx context.Context, f view.BatchFilter) ([]*view.TemplateBatch, string, error) {
	out, next, err := a.Store.Batches(ctx, f)
	for _, v := range out {
		a.estimate(v)
	}
	return out, next, err
}

// Recipients lists a batch's recipients in upload order. It returns the
// store's ENOTFOUND, EINVALID (bad cursor) and EUNAVAILABLE.
func (a *Admin) Recipients(ctx context.Context, f view.RecipientFilter) ([]*view.BatchRecipient, string, error) {
	return a.Store.BatchRecipients(ctx, f)
}

// Pause pauses running batch id and returns it: the calls in flight end and
// are recorded, no more are made until it is resumed (a paused batch stays
// as it is). It returns the store's ENOTFOUND, ECONFLICT (it has ended)
// and EUNAVAILABLE.
func (a *Admin) Pause(ctx context.Context, id int64) (*view.TemplateBatch, error) {
	return a.then(ctx, id, "paused", a.Store.PauseBatch(ctx, id))
}

// Resume resumes paused batch id and returns it (a running batch stays as
// it is). It returns the store's ENOTFOUND, ECONFLICT (it has ended) and
// EUNAVAILABLE.
func (a *Admin) Resume(ctx context.Context, id int64) (*view.TemplateBatch, error) {
	return a.then(ctx, id, "resumed", a.Store.ResumeBatch(ctx, id))
}

// Cancel cancels batch id and returns it: its pending recipients are
// cancelled; the calls in flight end and are recorded. It returns the
// store's ENOTFOUND, ECONFLICT (stopped or finished) and EUNAVAILABLE.
func (a *Admin) Cancel(ctx context.Context, id int64) (*view.TemplateBatch, error) {
	return a.then(ctx, id, "cancelled", a.Store.CancelBatch(ctx, id))
}

// RetryUnknown makes batch id's unknown recipients pending again (they may
// get the message twice) and returns the batch with Requeued set. It
// returns the store's ENOTFOUND, ECONFLICT (cancelled or stopped) and
// EUNAVAILABLE.
func (a *Admin) RetryUnknown(ctx context.Context, id int64) (*view.TemplateBatch, error) {
	n, err := a.Store.RetryUnknown(ctx, id)
	v, err := a.then(ctx, id, "unknown recipients queued again", err)
	if v != nil {
		v.Requeued = &n
		a.Logger.Warn().Int64("batch_id", id).Int("requeued", n).Msg("template message batch: unknown recipients queued again; they may get the message twice")
	}
	return v, err
}

// then answers a change of batch id: its error, or the batch as it is now.
func (a *Admin) then(ctx context.Context, id int64, what string, err error) (*view.TemplateBatch, error) {
	if err != nil {
		return nil, err
	}
	a.Logger.Info().Int64("batch_id", id).Msg("template message batch " + what)
	return a.Batch(ctx, id)
}
