package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Ingest records n and applies it in one transaction, and returns once that
// transaction is committed. A notification already stored (same app_id and
// notify_id) only has its delivery count raised: Outcome.Duplicate is set
// and nothing else changes. It returns an EUNAVAILABLE *notify.Error when
// the database cannot be reached; nothing is then recorded.
func (db *DB) Ingest(ctx context.Context, n *notify.Notification) (notify.Outcome, error) {
	r := db.IngestBatch(ctx, []*notify.Notification{n})[0]
	return r.Outcome, r.Err
}

// Result is one notification's part of a batch.
type Result struct {
	Outcome notify.Outcome
	Err     error
}

// IngestBatch records and applies ns in one transaction (group commit), and
// returns once it is committed, one Result per notification in order.
// Copies of one notification within ns count as deliveries of it. When the
// batch fails on data (a value Postgres refuses), each notification is
// ingested again alone, so that one bad notification fails alone and is
// kept as failed; when the database is unavailable, every Result carries an
// EUNAVAILABLE *notify.Error and nothing is recorded.
func (db *DB) IngestBatch(ctx context.Context, ns []*notify.Notification) []Result {
	out := make([]Result, len(ns))
	outcomes, err := db.ingest(ctx, ns, false)
	for try := 0; try < 2 && conflict(err); try++ {
		outcomes, err = db.ingest(ctx, ns, false)
	}
	if err == nil {
		for i := range ns {
			out[i].Outcome = outcomes[i]
		}
		return out
	}
	if retryable(err) || len(ns) == 1 && !errors.Is(err, errIsolate) {
		for i := range out {
			out[i].Err = unavailable(err)
		}
		return out
	}
	for i, n := range ns {
		one, err := db.ingest(ctx, []*notify.Notification{n}, true)
		if err != nil {
			out[i].Err = unavailable(err)
			continue
		}
		out[i].Outcome = one[0]
	}
	return out
}

// errIsolate marks a single-notification batch whose change failed on data:
// it is tried again with the change behind a savepoint.
var errIsolate = errors.New("store: change failed on data")

const insertNotifications = `
INSERT INTO notifications AS n (app_id, notify_id, msg_method, utc_timestamp, biz_content, params,
    encrypted, channel, content_form, cert_sn, status, error, delivery_count, received_at, last_received_at, processed_at)
SELECT a, i, m, NULLIF(ts, 0), b, p::json, e, ch, cf, sn, st, er, dc, r, r, r
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::boolean[], $8::text[],
            $9::text[], $10::text[], $11::text[], $12::text[], $13::int[], $14::timestamptz[])
    AS u(a, i, m, ts, b, p, e, ch, cf, sn, st, er, dc, r)
ON CONFLICT (app_id, notify_id) DO UPDATE
    SET delivery_count = n.delivery_count + EXCLUDED.delivery_count,
        last_received_at = EXCLUDED.last_received_at
RETURNING id, xmax = 0, app_id, notify_id, status, error, delivery_count`

// row is one distinct notification of a batch.
type row struct {
	n        *notify.Notification
	copies   int // deliveries of it in the batch
	id       int64
	inserted bool
	out      notify.Outcome
}

type key struct{ app, id string }

// ingest runs one batch transaction. isolate puts each change behind a
// savepoint (for a batch of one that failed on data).
func (db *DB) ingest(ctx context.Context, ns []*notify.Notification, isolate bool) ([]notify.Outcome, error) {
	// Copies of one notification become one row: a multi-row upsert may not
	// touch a row twice (SQLSTATE 21000).
	byKey := make(map[key]*row, len(ns))
	rows := make([]*row, 0, len(ns))
	for _, n := range ns {
		k := key{n.AppID, n.NotifyID}
		if r, ok := byKey[k]; ok {
			r.copies++
			continue
		}
		r := &row{n: n, copies: 1}
		byKey[k] = r
		rows = append(rows, r)
	}
	// Concurrent batches lock rows in one order, so they wait for each
	// other rather than deadlock.
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].n, rows[j].n
		return a.AppID < b.AppID || a.AppID == b.AppID && a.NotifyID < b.NotifyID
	})

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Handlers run only for notifications not stored yet, so that a resend
	// costs little. This look-up is an optimisation, not the guarantee: a
	// change applied twice has no second effect (state compares event
	// identity, history is unique per notification), and the insert's ON
	// CONFLICT decides what is new.
	stored, err := storedKeys(ctx, tx, rows)
	if err != nil {
		return nil, err
	}
	var fresh []*row
	for _, r := range rows {
		r.out.Status = notify.StatusUnhandled
		if r.n.Failure != "" {
			r.out.Status, r.out.Error = notify.StatusFailed, r.n.Failure
			continue
		}
		if !stored[key{r.n.AppID, r.n.NotifyID}] {
			fresh = append(fresh, r)
		}
	}
	// State first, then the inbox rows with their final status: each row is
	// written once.
	if err := db.applyRows(ctx, tx, fresh, isolate); err != nil {
		return nil, err
	}
	if err := insertRows(ctx, tx, rows, byKey); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}

	outcomes := make([]notify.Outcome, len(ns))
	first := make(map[key]bool, len(rows))
	for i, n := range ns {
		k := key{n.AppID, n.NotifyID}
		r := byKey[k]
		outcomes[i] = r.out
		outcomes[i].Duplicate = !r.inserted || first[k]
		first[k] = true
	}
	return outcomes, nil
}

// storedKeys returns which rows' notifications are stored already.
func storedKeys(ctx context.Context, tx pgx.Tx, rows []*row) (map[key]bool, error) {
	apps, ids := make([]string, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		apps[i], ids[i] = r.n.AppID, r.n.NotifyID
	}
	res, err := tx.Query(ctx, `SELECT app_id, notify_id FROM notifications
        WHERE (notify_id, app_id) IN (SELECT i, a FROM unnest($1::text[], $2::text[]) AS u(a, i))`, apps, ids)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	stored := map[key]bool{}
	for res.Next() {
		var k key
		if err := res.Scan(&k.app, &k.id); err != nil {
			return nil, err
		}
		stored[k] = true
	}
	return stored, res.Err()
}

// insertRows inserts the rows in one statement, with the status their
// handlers gave them, or raises the delivery count of those already stored
// (whose stored status and error it then reads back).
func insertRows(ctx context.Context, tx pgx.Tx, rows []*row, byKey map[key]*row) error {
	cols := struct {
		app, id, method, biz, channel, form, sn, status, errText []string
		params                                                   []string
		ts                                                       []int64
		enc                                                      []bool
		copies                                                   []int32
		received                                                 []any
	}{}
	for _, r := range rows {
		n := r.n
		params, err := json.Marshal(n.Params)
		if err != nil {
			return fmt.Errorf("store: unable to encode params: %w", err)
		}
		cols.app = append(cols.app, n.AppID)
		cols.id = append(cols.id, n.NotifyID)
		cols.method = append(cols.method, n.Method)
		cols.ts = append(cols.ts, n.UTCTimestamp)
		cols.biz = append(cols.biz, n.BizContent)
		cols.params = append(cols.params, string(params))
		cols.enc = append(cols.enc, n.Encrypted)
		cols.channel = append(cols.channel, n.Channel)
		cols.form = append(cols.form, n.ContentForm)
		cols.sn = append(cols.sn, n.CertSN)
		cols.status = append(cols.status, string(r.out.Status))
		cols.errText = append(cols.errText, r.out.Error)
		cols.copies = append(cols.copies, int32(r.copies))
		cols.received = append(cols.received, n.ReceivedAt.UTC())
	}
	res, err := tx.Query(ctx, insertNotifications, cols.app, cols.id, cols.method, cols.ts, cols.biz, cols.params,
		cols.enc, cols.channel, cols.form, cols.sn, cols.status, cols.errText, cols.copies, cols.received)
	if err != nil {
		return err
	}
	defer res.Close()
	for res.Next() {
		var (
			id       int64
			inserted bool
			k        key
			out      notify.Outcome
		)
		if err := res.Scan(&id, &inserted, &k.app, &k.id, &out.Status, &out.Error, &out.DeliveryCount); err != nil {
			return err
		}
		r := byKey[k]
		r.id, r.inserted, r.out = id, inserted, out
	}
	return res.Err()
}

// applyRows runs each new notification's handler and applies the changes,
// in the order of the state rows they touch: pipelined in one round trip,
// or one by one behind savepoints when isolate is set. It sets each row's
// status and error.
func (db *DB) applyRows(ctx context.Context, tx pgx.Tx, rows []*row, isolate bool) error {
	type pending struct {
		r      *row
		change notify.Change
	}
	var changes []pending
	for _, r := range rows {
		h, ok := db.registry.Handler(r.n.Method)
		if !ok {
			continue // stays unhandled
		}
		change, err := h(r.n)
		var appErr *notify.Error
		switch {
		case errors.As(err, &appErr):
			r.out.Status, r.out.Error = notify.StatusFailed, appErr.Message
			continue
		case err != nil:
			return err
		}
		changes = append(changes, pending{r, change})
	}
	sort.SliceStable(changes, func(i, j int) bool { return before(changes[i].change, changes[j].change) })
	batch := &pgx.Batch{}
	for _, c := range changes {
		r := c.r
		sql, args, err := changeQuery(c.change)
		if err != nil {
			return err
		}
		if isolate {
			if err := applyIsolated(ctx, tx, r, sql, args); err != nil {
				return err
			}
			continue
		}
		batch.Queue(sql, args...).QueryRow(func(res pgx.Row) error {
			var applied bool
			if err := res.Scan(&applied); err != nil {
				return err
			}
			r.out.Status = notify.StatusStale
			if applied {
				r.out.Status = notify.StatusApplied
			}
			return nil
		})
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		if len(rows) == 1 && !retryable(err) {
			return fmt.Errorf("%w: %v", errIsolate, err)
		}
		return err
	}
	return nil
}

// applyIsolated applies one change behind a savepoint: a change Postgres
// refuses leaves the notification failed with the error, and the rest of
// the transaction intact.
func applyIsolated(ctx context.Context, tx pgx.Tx, r *row, sql string, args []any) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	var applied bool
	err = sp.QueryRow(ctx, sql, args...).Scan(&applied)
	switch {
	case err == nil:
		r.out.Status = notify.StatusStale
		if applied {
			r.out.Status = notify.StatusApplied
		}
		return sp.Commit(ctx)
	case retryable(err):
		return err
	}
	if rbErr := sp.Rollback(ctx); rbErr != nil {
		return rbErr
	}
	r.out.Status, r.out.Error = notify.StatusFailed, "store: "+err.Error()
	return nil
}

// Reprocess runs the current handler again on a stored notification that
// ended failed or unhandled (after an upgrade or a configuration fix), in
// one transaction holding the row's lock, so that replicas reprocess it once.
// redecode, when not nil, decodes an encrypted biz_content again with the
// current keys. A notification in any other status is returned unchanged:
// reprocessing is idempotent. It returns an ENOTFOUND *notify.Error for an
// unknown notification.
func (db *DB) Reprocess(ctx context.Context, appID, notifyID string, redecode func(*notify.Notification)) (*notify.StoredNotification, error) {
	stored, err := db.Notification(ctx, appID, notifyID)
	if err != nil {
		return nil, err
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	stored, err = scanNotification(tx.QueryRow(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id = $1 FOR UPDATE`, stored.ID))
	if err != nil {
		return nil, unavailable(err)
	}
	if stored.Status != notify.StatusFailed && stored.Status != notify.StatusUnhandled {
		return stored, nil
	}
	n := &notify.Notification{
		AppID:       stored.AppID,
		NotifyID:    stored.NotifyID,
		Method:      stored.MsgMethod,
		BizContent:  stored.Biz,
		Params:      stored.Params,
		Encrypted:   stored.Encrypted,
		Channel:     stored.Channel,
		ContentForm: stored.ContentForm,
		ReceivedAt:  stored.ReceivedAt,
	}
	if stored.UTCTimestamp != nil {
		n.UTCTimestamp = *stored.UTCTimestamp
	}
	if n.Encrypted && redecode != nil {
		redecode(n)
	}
	r := &row{n: n, id: stored.ID}
	r.out.Status, r.out.Error = notify.StatusFailed, n.Failure
	if n.Failure == "" {
		r.out.Status, r.out.Error = notify.StatusUnhandled, ""
		if err := db.applyRows(ctx, tx, []*row{r}, true); err != nil {
			return nil, unavailable(err)
		}
	}
	status, errText := r.out.Status, r.out.Error
	_, err = tx.Exec(ctx, `UPDATE notifications SET status = $2, error = $3, biz_content = $4, processed_at = now() WHERE id = $1`,
		stored.ID, status, errText, n.BizContent)
	if err != nil {
		return nil, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, unavailable(err)
	}
	stored.Status, stored.Error, stored.Biz, stored.BizContent = status, errText, n.BizContent, bizJSON(n.BizContent)
	return stored, nil
}
