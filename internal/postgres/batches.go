package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Bulk template messages (issue 20). A batch's recipients are the queue
// its senders (internal/batchsend) work, in the shape of the webhook
// deliveries' (webhooks.go): ClaimRecipients locks a few due rows FOR
// UPDATE SKIP LOCKED and marks them sending, RecordRecipients writes many
// outcomes in one statement per batch, a retry is a pending row with a
// later next_attempt_at. Where the deliveries' lease makes a lost attempt
// due again (at least once), ExpireClaims makes a lost claim unknown (at
// most once). Every status change of a batch is a conditional UPDATE, and
// the one that ends it writes its event in the same transaction.

const batchColumns = `b.id, b.app_id, b.auth_app_id, COALESCE(b.idempotency_key, ''), b.request_hash, b.user_template_id,
    b.page, b.data, b.precheck, b.status, b.stop_reason, b.total, b.created_at, b.finished_at`

func scanBatch(row pgx.Row) (*notify.TemplateBatch, error) {
	var b notify.TemplateBatch
	var data []byte
	err := row.Scan(&b.ID, &b.AppID, &b.AuthAppID, &b.IdempotencyKey, &b.RequestHash, &b.UserTemplateID,
		&b.Page, &data, &b.Precheck, &b.Status, &b.StopReason, &b.Total, &b.CreatedAt, &b.FinishedAt)
	if data != nil {
		b.Data = data
	}
	return &b, err
}

func batchNotFound(id int64) error {
	return notify.Errorf(notify.ENOTFOUND, "unknown_batch", "no template message batch %d", id)
}

// CreateBatch records b, running, with its recipients (numbered from 1 in
// their order) in one transaction: the recipients go in by COPY, so a
// batch is stored whole or not at all. It sets b's ID, Status, Total and
// CreatedAt. When b.IdempotencyKey is already recorded for b.AppID (by an
// earlier or a concurrent call: the unique index decides), it records
// nothing and returns the batch recorded under the key. It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) CreateBatch(ctx context.Context, b *notify.TemplateBatch, recipients []notify.NewRecipient) (*notify.TemplateBatch, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var data any
	if b.Data != nil {
		data = string(b.Data)
	}
	err = tx.QueryRow(ctx, `INSERT INTO template_message_batches (app_id, auth_app_id, idempotency_key, request_hash,
            user_template_id, page, data, precheck, total)
        VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7::json, $8, $9)
        ON CONFLICT (app_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, created_at`,
		b.AppID, b.AuthAppID, b.IdempotencyKey, b.RequestHash, b.UserTemplateID, b.Page, data, b.Precheck, len(recipients)).
		Scan(&b.ID, &b.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		_ = tx.Rollback(ctx)
		return db.BatchByKey(ctx, b.AppID, b.IdempotencyKey)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	i := 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"template_message_recipients"},
		[]string{"batch_id", "seq", "to_user_id", "to_open_id", "data"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(recipients) {
				return nil, nil
			}
			r := recipients[i]
			i++
			var data any
			if r.Data != nil {
				data = string(r.Data)
			}
			return []any{b.ID, i, r.ToUserID, r.ToOpenID, data}, nil
		}))
	if err != nil {
		return nil, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, unavailable(err)
	}
	b.Status, b.Total = notify.BatchRunning, len(recipients)
	return nil, nil
}

// BatchByKey returns the batch recorded under an idempotency key for
// appID. It returns an ENOTFOUND *notify.Error when there is none, and an
// EUNAVAILABLE one when the database cannot be reached.
func (db *DB) BatchByKey(ctx context.Context, appID, key string) (*notify.TemplateBatch, error) {
	b, err := scanBatch(db.Pool.QueryRow(ctx, `SELECT `+batchColumns+` FROM template_message_batches b
        WHERE b.app_id = $1 AND b.idempotency_key = $2`, appID, key))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "unknown_batch", "no template message batch of app %s with Idempotency-Key %q", appID, key))
	}
	return b, nil
}

// RunningBatches returns the running batches of appIDs, oldest first. It
// returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) RunningBatches(ctx context.Context, appIDs []string) ([]*notify.TemplateBatch, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+batchColumns+` FROM template_message_batches b
        WHERE b.status = 'running' AND b.app_id = ANY($1) ORDER BY b.id`, appIDs)
	if err != nil {
		return nil, unavailable(err)
	}
	return collect(rows, scanBatch)
}

// claimRecipients claims up to $2 of batch $1's due pending recipients.
// The due rows are picked once (MATERIALIZED): as a subquery in FROM, the
// planner may scan the batch's recipients and run the pick again for each,
// claiming far more than the limit.
const claimRecipients = `
WITH due AS MATERIALIZED (
    SELECT seq FROM template_message_recipients
    WHERE batch_id = $1 AND status = 'pending' AND next_attempt_at <= now()
      AND EXISTS (SELECT 1 FROM template_message_batches b WHERE b.id = $1 AND b.status = 'running')
    ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
UPDATE template_message_recipients r SET status = 'sending', claimed_at = now(), attempts = r.attempts + 1
FROM due WHERE r.batch_id = $1 AND r.seq = due.seq
RETURNING r.seq, r.to_user_id, r.to_open_id, r.data, r.attempts`

// ClaimRecipients claims up to limit of batch id's due pending
// recipients, in upload order, while the batch is running: each becomes
// sending, claimed now, with its next attempt number. Replicas claiming at
// once get different ones (FOR UPDATE SKIP LOCKED). It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) ClaimRecipients(ctx context.Context, id int64, limit int) ([]notify.ClaimedRecipient, error) {
	rows, err := db.Pool.Query(ctx, claimRecipients, id, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	var (
		out  []notify.ClaimedRecipient
		c    notify.ClaimedRecipient
		data []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&c.Seq, &c.ToUserID, &c.ToOpenID, &data, &c.Attempt}, func() error {
		c.BatchID = id
		if data != nil {
			c.Data = append(json.RawMessage(nil), data...)
		}
		out = append(out, c)
		c, data = notify.ClaimedRecipient{}, nil
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// recordRecipients writes the outcomes of one batch's attempts ($1 the
// batch, $2 the recipients' seqs, found by the primary key). An outcome is
// written while its recipient is still sending under that attempt. A
// claim that ExpireClaims made unknown meanwhile keeps what it has, unless
// the outcome is one known for sure (sent, failed, skipped: a verified
// answer, or surely not sent), which replaces unknown; also once a
// retry-unknown made it pending again, attempts kept, so that it is not
// sent twice (one attempt has one outcome: a row of that attempt that is
// unknown or pending got there without it). An outcome that would leave
// it pending (tried again later) in a batch cancelled or stopped meanwhile
// cancels it, with the batch's reason, as the cancel did its pending
// recipients. The batch's row is locked FOR KEY SHARE, which the cancel's
// and the stop's FOR UPDATE waits for (and the other way round), so that
// no pending recipient is left in a batch that ended.
const recordRecipients = `
WITH b AS (SELECT status, stop_reason FROM template_message_batches WHERE id = $1 FOR KEY SHARE)
UPDATE template_message_recipients r SET
    status = CASE WHEN o.status = 'pending' AND b.status IN ('cancelled', 'stopped') THEN 'cancelled' ELSE o.status END,
    next_attempt_at = CASE WHEN o.status = 'pending' THEN o.next_at ELSE r.next_attempt_at END,
    code = o.code, sub_code = o.sub_code, sub_msg = o.sub_msg, latency_ms = o.ms,
    error = CASE WHEN o.status <> 'pending' THEN o.error
                 WHEN b.status = 'cancelled' THEN 'batch cancelled'
                 WHEN b.status = 'stopped' THEN 'batch stopped: ' || b.stop_reason
                 ELSE o.error END,
    finished_at = CASE WHEN o.status = 'pending' AND b.status NOT IN ('cancelled', 'stopped') THEN NULL ELSE now() END
FROM b, unnest($2::int[], $3::int[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[])
    AS o(seq, attempt, status, next_at, code, sub_code, sub_msg, error, ms)
WHERE r.batch_id = $1 AND r.seq = ANY($2::int[]) AND r.seq = o.seq AND r.attempts = o.attempt
  AND (r.status = 'sending' OR r.status IN ('unknown', 'pending') AND o.status IN ('sent', 'failed', 'skipped'))`

// RecordRecipients records outcomes (in one transaction, one statement
// per batch): each recipient's new status, Alipay's codes, the error and
// the latency; a pending one is due again at its NextAt, or cancelled when
// its batch was cancelled or stopped meanwhile. An outcome whose claim has
// expired (ExpireClaims made it unknown) is recorded only when it is sent,
// failed or skipped (see recordRecipients). It returns how many were
// recorded, and an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) RecordRecipients(ctx context.Context, outcomes []notify.RecipientOutcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	type columns struct {
		seq, attempt, ms                       []int32
		status, code, subCode, subMsg, errText []string
		next                                   []time.Time
	}
	byBatch := map[int64]*columns{}
	var order []int64
	for _, o := range outcomes {
		c := byBatch[o.BatchID]
		if c == nil {
			c = &columns{}
			byBatch[o.BatchID] = c
			order = append(order, o.BatchID)
		}
		next := o.NextAt
		if next.IsZero() {
			next = time.Unix(0, 0)
		}
		c.seq, c.attempt, c.ms = append(c.seq, int32(o.Seq)), append(c.attempt, int32(o.Attempt)), append(c.ms, int32(o.Latency.Milliseconds()))
		c.status, c.next = append(c.status, o.Status), append(c.next, next)
		c.code, c.subCode = append(c.code, validText(o.Code)), append(c.subCode, validText(o.SubCode))
		c.subMsg, c.errText = append(c.subMsg, validText(o.SubMsg)), append(c.errText, validText(o.Error))
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return 0, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	batch := &pgx.Batch{}
	recorded := 0
	for _, id := range order {
		c := byBatch[id]
		batch.Queue(recordRecipients, id, c.seq, c.attempt, c.status, c.next, c.code, c.subCode, c.subMsg, c.errText, c.ms).
			Exec(func(tag pgconn.CommandTag) error {
				recorded += int(tag.RowsAffected())
				return nil
			})
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return 0, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, unavailable(err)
	}
	return recorded, nil
}

// RenewClaim checks, just before a send, that batch id is still running
// and its recipient seq still claimed under attempt, and renews the claim
// (claimed_at now, a full lease for the send), in one statement. It
// returns the batch's status (empty when there is none) and whether it
// renewed the claim (never when the batch is not running), and an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) RenewClaim(ctx context.Context, id int64, seq, attempt int) (string, bool, error) {
	var (
		status  string
		renewed bool
	)
	err := db.Pool.QueryRow(ctx, `WITH b AS (SELECT status FROM template_message_batches WHERE id = $1),
        renewed AS (UPDATE template_message_recipients SET claimed_at = now()
            WHERE batch_id = $1 AND seq = $2 AND status = 'sending' AND attempts = $3
              AND EXISTS (SELECT 1 FROM b WHERE b.status = 'running')
            RETURNING 1)
        SELECT COALESCE((SELECT status FROM b), ''), EXISTS (SELECT 1 FROM renewed)`, id, seq, attempt).Scan(&status, &renewed)
	if err != nil {
		return "", false, unavailable(err)
	}
	return status, renewed, nil
}

// ExpireClaims makes unknown every recipient claimed longer than olderThan
// ago and still sending: the replica that claimed it died or lost the
// database before recording its outcome, and whether Alipay got the call is
// unknown. It returns what it changed, by batch, and an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) ExpireClaims(ctx context.Context, olderThan time.Duration) ([]notify.ExpiredClaims, error) {
	rows, err := db.Pool.Query(ctx, `
        WITH expired AS (
            UPDATE template_message_recipients SET status = 'unknown', finished_at = now(),
                error = 'claim expired: the replica sending it stopped before recording the outcome; whether Alipay got it is unknown'
            WHERE status = 'sending' AND claimed_at < now() - $1 * interval '1 microsecond'
            RETURNING batch_id)
        SELECT e.batch_id, b.app_id, count(*) FROM expired e JOIN template_message_batches b ON b.id = e.batch_id
        GROUP BY 1, 2`, olderThan.Microseconds())
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notify.ExpiredClaims, error) {
		var e notify.ExpiredClaims
		err := row.Scan(&e.BatchID, &e.AppID, &e.N)
		return e, err
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// lockBatch locks batch id's row for the rest of tx and returns it. Later
// statements of tx see what any transaction that held the lock before
// committed (each statement takes a new snapshot), so a check made after
// it is current.
func lockBatch(ctx context.Context, tx pgx.Tx, id int64) (*notify.TemplateBatch, error) {
	b, err := scanBatch(tx.QueryRow(ctx, `SELECT `+batchColumns+` FROM template_message_batches b WHERE b.id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, rowErr(err, batchNotFound(id))
	}
	return b, nil
}

// batchCounts reads batch id's recipients by status, and its failures by
// sub_code (see view.TemplateBatch.FailedBySubCode).
const batchCounts = `
SELECT COALESCE((SELECT jsonb_object_agg(status, n) FROM
            (SELECT status, count(*) AS n FROM template_message_recipients WHERE batch_id = $1 GROUP BY status) s), '{}'),
       COALESCE((SELECT jsonb_object_agg(k, n) FROM
            (SELECT COALESCE(NULLIF(sub_code, ''), NULLIF(code, ''), 'retries_exhausted') AS k, count(*) AS n
             FROM template_message_recipients WHERE batch_id = $1 AND status = 'failed' GROUP BY 1) f), '{}')`

// end writes the end of b, whose status the caller has just set to a
// final one in tx: its event, with the counts as they are in tx. The
// event is the batch's one (notify.BatchEventNotifyID): a second end
// writes none.
func end(ctx context.Context, tx pgx.Tx, b *notify.TemplateBatch) error {
	var byStatus, bySubCode map[string]int
	if err := tx.QueryRow(ctx, batchCounts, b.ID).Scan(&byStatus, &bySubCode); err != nil {
		return err
	}
	e := notify.BatchEvent{BatchID: b.ID, AppID: b.AppID, AuthAppID: b.AuthAppID, UserTemplateID: b.UserTemplateID,
		Status: b.Status, StopReason: b.StopReason, Counts: notify.BatchCounts{Total: b.Total},
		FailedBySubCode: bySubCode, CreatedAt: b.CreatedAt, FinishedAt: *b.FinishedAt}
	for s, n := range byStatus {
		e.Counts.Add(s, n)
	}
	_, err := tx.Exec(ctx, `INSERT INTO events (app_id, notify_id, type, occurred_at, data) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (app_id, notify_id, type) DO NOTHING`,
		b.AppID, notify.BatchEventNotifyID(b.ID), notify.EventTemplateBatchFinished, *b.FinishedAt, string(e.Data()))
	return err
}

// FinishBatch marks batch id finished once it is running and has no
// recipient left pending or sending, and writes its event in the same
// transaction. It reports whether it finished it, and returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) FinishBatch(ctx context.Context, id int64) (bool, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return false, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	b, err := lockBatch(ctx, tx, id)
	if err != nil || b.Status != notify.BatchRunning {
		return false, err
	}
	var left bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM template_message_recipients
        WHERE batch_id = $1 AND status IN ('pending', 'sending'))`, id).Scan(&left)
	if err != nil || left {
		return false, unavailable(err)
	}
	err = tx.QueryRow(ctx, `UPDATE template_message_batches SET status = 'finished', finished_at = now(), updated_at = now()
        WHERE id = $1 RETURNING status, finished_at`, id).Scan(&b.Status, &b.FinishedAt)
	if err != nil {
		return false, unavailable(err)
	}
	if err := end(ctx, tx, b); err != nil {
		return false, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, unavailable(err)
	}
	return true, nil
}

// stopOrCancel ends batch id, running or paused, as status (stopped or
// cancelled) with reason: its pending recipients become cancelled, and its
// event is written, in one transaction. Recipients in flight are recorded
// when their calls end. It returns the batch as it is then, whether it
// changed it, an ENOTFOUND *notify.Error for an unknown batch, and an
// EUNAVAILABLE one when the database cannot be reached.
func (db *DB) stopOrCancel(ctx context.Context, id int64, status, reason string) (*notify.TemplateBatch, bool, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, false, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	b, err := lockBatch(ctx, tx, id)
	if err != nil {
		return nil, false, err
	}
	if b.Status != notify.BatchRunning && b.Status != notify.BatchPaused {
		return b, false, nil
	}
	err = tx.QueryRow(ctx, `UPDATE template_message_batches SET status = $2, stop_reason = $3, finished_at = now(), updated_at = now()
        WHERE id = $1 RETURNING status, stop_reason, finished_at`, id, status, reason).Scan(&b.Status, &b.StopReason, &b.FinishedAt)
	if err != nil {
		return nil, false, unavailable(err)
	}
	why := "batch cancelled"
	if status == notify.BatchStopped {
		why = "batch stopped: " + reason
	}
	_, err = tx.Exec(ctx, `UPDATE template_message_recipients SET status = 'cancelled', error = $2, finished_at = now()
        WHERE batch_id = $1 AND status = 'pending'`, id, why)
	if err != nil {
		return nil, false, unavailable(err)
	}
	if err := end(ctx, tx, b); err != nil {
		return nil, false, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, unavailable(err)
	}
	return b, true, nil
}

// StopBatch stops batch id, running or paused, for reason (see
// notify.StopAuthorizationCancelled and the others): its pending
// recipients become cancelled and its event is written, in one
// transaction. It reports whether it stopped it (not when it had already
// ended), and returns an ENOTFOUND *notify.Error for an unknown batch and
// an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) StopBatch(ctx context.Context, id int64, reason string) (bool, error) {
	_, stopped, err := db.stopOrCancel(ctx, id, notify.BatchStopped, reason)
	return stopped, err
}

// CancelBatch cancels batch id, running or paused (again: nothing
// changes): its pending recipients become cancelled and its event is
// written, in one transaction; no recipient is claimed after it. It
// returns an ENOTFOUND *notify.Error for an unknown batch, an ECONFLICT
// one when it has stopped or finished, and an EUNAVAILABLE one when the
// database cannot be reached.
func (db *DB) CancelBatch(ctx context.Context, id int64) error {
	b, _, err := db.stopOrCancel(ctx, id, notify.BatchCancelled, "")
	if err == nil && b.Status != notify.BatchCancelled {
		err = notAllowed(b, "cancel")
	}
	return err
}

func notAllowed(b *notify.TemplateBatch, what string) error {
	return notify.Errorf(notify.ECONFLICT, "batch_"+b.Status, "template message batch %d is %s: it cannot %s", b.ID, b.Status, what)
}

// setStatus moves batch id from one of from to status, clearing the reason
// the sender paused it for; when it is already status it changes nothing, and when it is in neither it changes nothing
// and returns an ECONFLICT *notify.Error.
func (db *DB) setStatus(ctx context.Context, id int64, status, what string, from ...string) error {
	var now string
	err := db.Pool.QueryRow(ctx, `WITH b AS (SELECT id, status FROM template_message_batches WHERE id = $1),
        moved AS (UPDATE template_message_batches t SET status = $2, stop_reason = '', updated_at = now()
                  FROM b WHERE t.id = b.id AND b.status = ANY($3) RETURNING t.status)
        SELECT COALESCE((SELECT status FROM moved), b.status) FROM b`, id, status, from).Scan(&now)
	if err != nil {
		return rowErr(err, batchNotFound(id))
	}
	if now != status {
		return notAllowed(&notify.TemplateBatch{ID: id, Status: now}, what)
	}
	return nil
}

// PauseBatchFor pauses running batch id for reason (see
// notify.PauseTokenExpired and the others), kept as its stop_reason until
// it is resumed: no recipient is claimed until then. It reports whether it
// paused it (not when it was not running), and returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) PauseBatchFor(ctx context.Context, id int64, reason string) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE template_message_batches SET status = 'paused', stop_reason = $2, updated_at = now()
        WHERE id = $1 AND status = 'running'`, id, reason)
	if err != nil {
		return false, unavailable(err)
	}
	return tag.RowsAffected() == 1, nil
}

// PauseBatch pauses running batch id: no recipient is claimed until it is
// resumed; those in flight are recorded. A paused batch stays as it is. It
// returns an ENOTFOUND *notify.Error for an unknown batch, an ECONFLICT one
// when it has ended, and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) PauseBatch(ctx context.Context, id int64) error {
	return db.setStatus(ctx, id, notify.BatchPaused, "pause", notify.BatchRunning)
}

// ResumeBatch resumes paused batch id, the reason the sender paused it
// for cleared; a running batch stays as it is. It
// returns an ENOTFOUND *notify.Error for an unknown batch, an ECONFLICT one
// when it has ended, and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) ResumeBatch(ctx context.Context, id int64) error {
	return db.setStatus(ctx, id, notify.BatchRunning, "resume", notify.BatchPaused)
}

// RetryUnknown makes batch id's unknown recipients pending again, due now,
// their attempts kept, and a finished batch running again (its event,
// written when it first finished, is not written again). The users may get
// the message twice. It returns how many it made pending, an ENOTFOUND
// *notify.Error for an unknown batch, an ECONFLICT one when it is cancelled
// or stopped, and an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) RetryUnknown(ctx context.Context, id int64) (int, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return 0, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	b, err := lockBatch(ctx, tx, id)
	if err != nil {
		return 0, err
	}
	if b.Status == notify.BatchCancelled || b.Status == notify.BatchStopped {
		return 0, notAllowed(b, "retry its unknown recipients")
	}
	tag, err := tx.Exec(ctx, `UPDATE template_message_recipients SET status = 'pending', next_attempt_at = now(),
            error = '', code = '', sub_code = '', sub_msg = '', finished_at = NULL
        WHERE batch_id = $1 AND status = 'unknown'`, id)
	if err != nil {
		return 0, unavailable(err)
	}
	n := int(tag.RowsAffected())
	if n > 0 && b.Status == notify.BatchFinished {
		_, err = tx.Exec(ctx, `UPDATE template_message_batches SET status = 'running', finished_at = NULL, updated_at = now()
            WHERE id = $1`, id)
		if err != nil {
			return 0, unavailable(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// batchViewColumns are a batch's view (alias b): its columns, its counts
// (batchCounts), the sends finished in the last minute and that window
// in seconds (the batch's age, when younger).
const batchViewColumns = `b.id, b.app_id, b.auth_app_id, COALESCE(b.idempotency_key, ''), b.request_hash,
    b.user_template_id, b.page, b.precheck, b.status, b.stop_reason, b.total, b.created_at, b.finished_at,
    COALESCE((SELECT jsonb_object_agg(status, n) FROM
        (SELECT status, count(*) AS n FROM template_message_recipients WHERE batch_id = b.id GROUP BY status) s), '{}'),
    COALESCE((SELECT jsonb_object_agg(k, n) FROM
        (SELECT COALESCE(NULLIF(sub_code, ''), NULLIF(code, ''), 'retries_exhausted') AS k, count(*) AS n
         FROM template_message_recipients WHERE batch_id = b.id AND status = 'failed' GROUP BY 1) f), '{}'),
    (SELECT count(*) FROM template_message_recipients WHERE batch_id = b.id AND finished_at > now() - interval '60 seconds'),
    GREATEST(1, LEAST(60, extract(epoch FROM now() - b.created_at)))::float8`

func scanBatchView(row pgx.Row) (*view.TemplateBatch, error) {
	var (
		v                   view.TemplateBatch
		byStatus, bySubCode map[string]int
		recent              int
		window              float64
	)
	err := row.Scan(&v.ID, &v.AppID, &v.AuthAppID, &v.IdempotencyKey, &v.RequestHash, &v.UserTemplateID, &v.Page, &v.Precheck,
		&v.Status, &v.StopReason, &v.Counts.Total, &v.CreatedAt, &v.FinishedAt, &byStatus, &bySubCode, &recent, &window)
	if err != nil {
		return nil, err
	}
	for s, n := range byStatus {
		v.Counts.Add(s, n)
	}
	v.FailedBySubCode = bySubCode
	if v.FailedBySubCode == nil {
		v.FailedBySubCode = map[string]int{}
	}
	v.RatePerSecond = float64(recent) / window
	return &v, nil
}

// Batch returns batch id with its progress. It returns an ENOTFOUND
// *notify.Error when there is none, and an EUNAVAILABLE one when the
// database cannot be reached.
func (db *DB) Batch(ctx context.Context, id int64) (*view.TemplateBatch, error) {
	v, err := scanBatchView(db.Pool.QueryRow(ctx, `SELECT `+batchViewColumns+` FROM template_message_batches b WHERE b.id = $1`, id))
	if err != nil {
		return nil, rowErr(err, batchNotFound(id))
	}
	return v, nil
}

// Batches lists batches newest first, a page at a time, each with its
// progress, and returns the cursor of the next page ("" after the last).
// It returns an EINVALID *notify.Error for a cursor it did not make, and
// an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) Batches(ctx context.Context, f view.BatchFilter) ([]*view.TemplateBatch, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		ID int64 `json:"i"`
	}
	if f.After != "" {
		if err := decodeCursor(f.After, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+batchViewColumns+` FROM template_message_batches b
        WHERE ($1 = '' OR b.app_id = $1) AND ($2 = '' OR b.status = $2) AND ($3::bigint = 0 OR b.id < $3)
        ORDER BY b.id DESC LIMIT $4`, f.AppID, f.Status, after.ID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, scanBatchView)
	if err != nil {
		return nil, "", err
	}
	if out == nil { // none: an empty list, not nil
		out = []*view.TemplateBatch{}
	}
	return pageOf(out, limit, func(last *view.TemplateBatch) any {
		after.ID = last.ID
		return after
	})
}

// batchRecipients is BatchRecipients' statement, planned for its actual
// parameters (a generic plan could not use the status): the primary key
// (batch_id, seq) for all of a batch's recipients, the status index
// (batch_id, status, seq) for those of one status, each in upload order
// from the cursor on.
const batchRecipients = `SELECT seq, to_user_id, to_open_id, data, status, attempts,
        CASE WHEN status = 'pending' THEN next_attempt_at END, code, sub_code, sub_msg, error, latency_ms, finished_at
    FROM template_message_recipients
    WHERE batch_id = $1 AND ($2 = '' OR status = $2) AND seq > $3
    ORDER BY seq LIMIT $4`

// BatchRecipients lists a batch's recipients in upload order, those of
// f.Status when it is set, a page at a time, and returns the cursor of the
// next page ("" after the last). It returns an ENOTFOUND *notify.Error for
// an unknown batch, an EINVALID one for a cursor it did not make, and an
// EUNAVAILABLE one when the database cannot be reached.
func (db *DB) BatchRecipients(ctx context.Context, f view.RecipientFilter) ([]*view.BatchRecipient, string, error) {
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM template_message_batches WHERE id = $1)`, f.BatchID).Scan(&exists); err != nil {
		return nil, "", unavailable(err)
	}
	if !exists {
		return nil, "", batchNotFound(f.BatchID)
	}
	limit := clampLimit(f.Limit)
	var after struct {
		Seq int `json:"s"`
	}
	if f.After != "" {
		if err := decodeCursor(f.After, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, batchRecipients, pgx.QueryExecModeExec, f.BatchID, f.Status, after.Seq, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, func(row pgx.Row) (*view.BatchRecipient, error) {
		var r view.BatchRecipient
		var data []byte
		err := row.Scan(&r.Row, &r.ToUserID, &r.ToOpenID, &data, &r.Status, &r.Attempts, &r.NextAttemptAt,
			&r.Code, &r.SubCode, &r.SubMsg, &r.Error, &r.LatencyMS, &r.FinishedAt)
		if data != nil {
			r.Data = data
		}
		return &r, err
	})
	if err != nil {
		return nil, "", err
	}
	if out == nil {
		out = []*view.BatchRecipient{}
	}
	return pageOf(out, limit, func(last *view.BatchRecipient) any {
		after.Seq = last.Row
		return after
	})
}

// BatchStats reads the batch sender's gauges: by ISV app, the recipients
// of running and paused batches still to send, and the longest a running
// batch with recipients left has gone without a send finishing. It returns
// an EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) BatchStats(ctx context.Context) (*notify.BatchStats, error) {
	st := &notify.BatchStats{Pending: map[string]int{}, Idle: map[string]time.Duration{}}
	rows, err := db.Pool.Query(ctx, `
        SELECT b.app_id, b.status, left_.n,
            extract(epoch FROM now() - GREATEST(b.created_at, b.updated_at,
                (SELECT max(finished_at) FROM template_message_recipients r WHERE r.batch_id = b.id AND r.finished_at IS NOT NULL)))
        FROM template_message_batches b,
            LATERAL (SELECT count(*) AS n FROM template_message_recipients r
                     WHERE r.batch_id = b.id AND r.status IN ('pending', 'sending')) left_
        WHERE b.status IN ('running', 'paused')`)
	if err != nil {
		return nil, unavailable(err)
	}
	var (
		appID, status string
		n             int
		idle          float64
	)
	_, err = pgx.ForEachRow(rows, []any{&appID, &status, &n, &idle}, func() error {
		st.Pending[appID] += n
		if d := time.Duration(idle * float64(time.Second)); status == notify.BatchRunning && n > 0 && d > st.Idle[appID] {
			st.Idle[appID] = d
		} else if _, ok := st.Idle[appID]; !ok {
			st.Idle[appID] = 0
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return st, nil
}
