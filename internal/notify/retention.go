package notify

import (
	"context"
	"fmt"
	"time"
)

// Retention says how long each kind of record is kept. Zero keeps it
// forever. Business state (authorizations, mini-apps, versions, orders)
// and the audit and order histories are not in it: they are the record,
// never pruned by age.
type Retention struct {
	// Notifications: applied and stale notifications, after they arrived.
	Notifications time.Duration
	// Failed: failed and unhandled notifications (someone must look at
	// them), after they arrived.
	Failed time.Duration
	// Events: forwarded events, and the webhook deliveries and attempts
	// made of them, after they were written. An event with a delivery still
	// pending stays until that delivery ends. Finished reconciliation runs
	// and their errors are kept as long; a run that repaired something
	// stays, with its drift records, which are the history of the state.
	Events time.Duration
	// TemplateMessages: outbound template messages (and their
	// Idempotency-Key), after they were sent; one still pending stays. The
	// same retention keeps template message batches that ended (finished,
	// cancelled, stopped), with their recipients, after they ended.
	TemplateMessages time.Duration
	// Digests: the digest of a pruned notification's signed content, kept
	// this long after the prune so that a resend or a replay of it is still
	// a duplicate (see PrunedDigests).
	Digests time.Duration
}

// MinNotificationRetention is the shortest retention of a notification:
// well past Alipay's retries (about 25 hours), so that Alipay never resends
// one that is gone.
const MinNotificationRetention = 72 * time.Hour

// Check returns an EINVALID *Error when r keeps notifications for less
// than MinNotificationRetention, events longer than applied notifications
// (a notification.received event is read with its notification), or has a
// negative duration.
func (r Retention) Check() error {
	for _, k := range r.Kept() {
		if k.For < 0 {
			return Errorf(EINVALID, "bad_retention", "the retention of %s is negative", k.What)
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"notifications", r.Notifications}, {"failed notifications", r.Failed}} {
		if d.d > 0 && d.d < MinNotificationRetention {
			return Errorf(EINVALID, "bad_retention", "the retention of %s is %s: at least %s (Alipay resends for about 25 hours)", d.name, d.d, MinNotificationRetention)
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"applied and stale notifications", r.Notifications}, {"failed and unhandled notifications", r.Failed}} {
		if d.d > 0 && (r.Events == 0 || r.Events > d.d) {
			return Errorf(EINVALID, "bad_retention", "events are kept %s, longer than %s (%s): a notification.received event is read with its notification", forever(r.Events), d.name, d.d)
		}
	}
	return nil
}

func forever(d time.Duration) string {
	if d == 0 {
		return "forever"
	}
	return "for " + d.String()
}

// Prunable names what a prune deletes.
type Prunable string

// What a prune deletes, in the order it does.
const (
	PruneNotifications    Prunable = "notifications"        // applied and stale
	PruneFailed           Prunable = "failed_notifications" // failed and unhandled
	PruneEvents           Prunable = "events"               // with their deliveries and attempts
	PruneTemplateMessages Prunable = "template_messages"
	PruneTemplateBatches  Prunable = "template_batches" // that ended, with their recipients
	PruneReconcileRuns    Prunable = "reconcile_runs"   // finished, with their errors; those that repaired stay with their drift
	PruneDigests          Prunable = "pruned_digests"
)

// Cutoff is a prune's bound: what records older than Before.
type Cutoff struct {
	What   Prunable
	Before time.Time
}

// Kept is how long a kind of record is kept (zero: forever).
type Kept struct {
	What Prunable
	For  time.Duration
}

// Kept returns how long r keeps each kind of record, in the order a prune
// goes.
func (r Retention) Kept() []Kept {
	return []Kept{{PruneNotifications, r.Notifications}, {PruneFailed, r.Failed}, {PruneEvents, r.Events},
		{PruneTemplateMessages, r.TemplateMessages}, {PruneTemplateBatches, r.TemplateMessages},
		{PruneReconcileRuns, r.Events}, {PruneDigests, r.Digests}}
}

// Cutoffs returns the bounds of a prune at now, one for each kind of
// record kept for a time, in the order a prune goes.
func (r Retention) Cutoffs(now time.Time) []Cutoff {
	var out []Cutoff
	for _, k := range r.Kept() {
		if k.For > 0 {
			out = append(out, Cutoff{What: k.What, Before: now.Add(-k.For)})
		}
	}
	return out
}

// Pruning is a prune run holding the prune lock (one replica prunes at a
// time); the postgres package implements it.
type Pruning interface {
	// Prune deletes at most limit (per statement) of the oldest records c
	// names, and says how many it deleted: fewer than limit when none is
	// left. It returns an EUNAVAILABLE *Error when the database cannot be
	// reached.
	Prune(ctx context.Context, c Cutoff, limit int) (int64, error)
	// Done releases the prune lock.
	Done()
}

// String says what c prunes, for a log line.
func (c Cutoff) String() string {
	return fmt.Sprintf("%s before %s", c.What, c.Before.UTC().Format(time.RFC3339))
}
