package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

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
	outcomes, err := db.ingest(ctx, ns)
	for try := 0; try < 2 && conflict(err); try++ {
		outcomes, err = db.ingest(ctx, ns)
	}
	if err == nil {
		for i := range ns {
			out[i].Outcome = outcomes[i]
		}
		return out
	}
	if retryable(err) {
		for i := range out {
			out[i].Err = unavailable(err)
		}
		return out
	}
	for i, n := range ns {
		one, err := db.ingestIsolated(ctx, n)
		if err != nil {
			out[i].Err = unavailable(err)
			continue
		}
		out[i].Outcome = one
	}
	return out
}

const insertNotifications = `
INSERT INTO notifications AS n (app_id, notify_id, msg_method, utc_timestamp, biz_content, params,
    encrypted, channel, content_form, cert_sn, status, error, delivery_count, received_at, last_received_at, processed_at)
SELECT a, i, m, NULLIF(ts, 0), b, p::json, e, ch, cf, sn,
    CASE
        WHEN ck = '' THEN st
        WHEN CASE ck
            WHEN 'auth' THEN (SELECT x.event_notify_id = i FROM authorizations x WHERE x.app_id = a AND x.auth_app_id = cr)
            WHEN 'order' THEN (SELECT x.applied FROM mini_app_order_events x WHERE x.app_id = a AND x.notify_id = i)
            WHEN 'audit' THEN (SELECT x.applied FROM mini_app_audit_events x WHERE x.app_id = a AND x.notify_id = i)
        END THEN 'applied'
        ELSE 'stale'
    END,
    er, dc, r, r, r
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::boolean[], $8::text[],
            $9::text[], $10::text[], $11::text[], $12::text[], $13::int[], $14::timestamptz[], $15::text[], $16::text[])
    AS u(a, i, m, ts, b, p, e, ch, cf, sn, st, er, dc, r, ck, cr)
ON CONFLICT (app_id, notify_id) DO UPDATE
    SET delivery_count = n.delivery_count + EXCLUDED.delivery_count,
        last_received_at = EXCLUDED.last_received_at
RETURNING id, xmax = 0, app_id, notify_id, status, error, delivery_count`

// row is one distinct notification of a batch.
type row struct {
	n        *notify.Notification
	copies   int           // deliveries of it in the batch
	change   notify.Change // what its handler decided, if it ran and decided
	stateRow string        // changeRow(change)
	id       int64
	inserted bool
	out      notify.Outcome
}

type key struct{ app, id string }

// ingest runs one batch in two round trips. The first asks which of its
// notifications are stored already, outside any transaction: handlers run
// only for the others, so that a resend costs little. That look-up is an
// optimisation, not the guarantee: a change applied twice has no second
// effect (state compares event identity, history is unique per
// notification), and the insert's ON CONFLICT decides what is new.
//
// The second sends the change statements and the inbox insert together,
// one implicit transaction that commits when the last of them is done
// (group commit: one WAL flush for the batch). The insert reads each
// change's outcome back from the state it changed (see insertNotifications),
// so that nothing waits for an answer in between, and each inbox row is
// written once, with its final status.
func (db *DB) ingest(ctx context.Context, ns []*notify.Notification) ([]notify.Outcome, error) {
	rows, byKey := distinct(ns)
	fresh, err := db.fresh(ctx, rows)
	if err != nil {
		return nil, err
	}
	changed, err := db.handle(fresh)
	if err != nil {
		return nil, err
	}
	stmts, err := statements(changed)
	if err != nil {
		return nil, err
	}
	ins, err := insertStatement(rows, true)
	if err != nil {
		return nil, err
	}
	batch := &pgx.Batch{}
	for _, st := range stmts {
		batch.Queue(st.sql, st.args...) // their answers are read back by the insert
	}
	batch.Queue(ins.sql, ins.args...).Query(func(res pgx.Rows) error { return readInserted(res, byKey) })
	if err := db.Pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	return outcomes(ns, byKey), nil
}

// ingestIsolated ingests one notification whose batch failed on data, in
// an explicit transaction with its change behind a savepoint: a change
// Postgres refuses leaves it failed with the error, and it is still kept.
func (db *DB) ingestIsolated(ctx context.Context, n *notify.Notification) (notify.Outcome, error) {
	rows, byKey := distinct([]*notify.Notification{n})
	fresh, err := db.fresh(ctx, rows)
	if err != nil {
		return notify.Outcome{}, err
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return notify.Outcome{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := db.applyIsolated(ctx, tx, fresh); err != nil {
		return notify.Outcome{}, err
	}
	ins, err := insertStatement(rows, false)
	if err != nil {
		return notify.Outcome{}, err
	}
	res, err := tx.Query(ctx, ins.sql, ins.args...)
	if err != nil {
		return notify.Outcome{}, err
	}
	if err := readInserted(res, byKey); err != nil {
		return notify.Outcome{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return notify.Outcome{}, err
	}
	return outcomes([]*notify.Notification{n}, byKey)[0], nil
}

// distinct returns the distinct notifications of ns as rows, in the order
// of their keys, with copies counted as deliveries: a multi-row upsert may
// not touch a row twice (SQLSTATE 21000), and concurrent batches that lock
// rows in one order wait for each other rather than deadlock.
func distinct(ns []*notify.Notification) ([]*row, map[key]*row) {
	byKey := make(map[key]*row, len(ns))
	rows := make([]*row, 0, len(ns))
	for _, n := range ns {
		k := key{n.AppID, n.NotifyID}
		if r, ok := byKey[k]; ok {
			r.copies++
			continue
		}
		r := &row{n: n, copies: 1}
		r.out.Status = notify.StatusUnhandled
		if n.Failure != "" {
			r.out.Status, r.out.Error = notify.StatusFailed, n.Failure
		}
		byKey[k] = r
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].n, rows[j].n
		return a.AppID < b.AppID || a.AppID == b.AppID && a.NotifyID < b.NotifyID
	})
	return rows, byKey
}

// outcomes returns each of ns's outcome; a copy after the first, or a
// notification stored before, is a duplicate.
func outcomes(ns []*notify.Notification, byKey map[key]*row) []notify.Outcome {
	out := make([]notify.Outcome, len(ns))
	first := make(map[key]bool, len(byKey))
	for i, n := range ns {
		k := key{n.AppID, n.NotifyID}
		r := byKey[k]
		out[i] = r.out
		out[i].Duplicate = !r.inserted || first[k]
		first[k] = true
	}
	return out
}

// storedNotifications answers which of the given notifications are stored.
// Here, and in insertNotifications, a look-up by key is a scalar subquery:
// it is planned as an index probe per key even while the tables are empty,
// and a prepared statement's plan is kept (a semi-join planned on empty
// tables hashes a sequential scan of the inbox, and keeps doing so as it
// grows, until the next ANALYZE).
const storedNotifications = `
SELECT a, i FROM unnest($1::text[], $2::text[]) AS u(a, i)
WHERE (SELECT true FROM notifications n WHERE n.notify_id = u.i AND n.app_id = u.a)`

// fresh returns the rows to run handlers for: those that did not fail
// decoding and whose notification is not stored yet.
func (db *DB) fresh(ctx context.Context, rows []*row) ([]*row, error) {
	apps, ids := make([]string, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		apps[i], ids[i] = r.n.AppID, r.n.NotifyID
	}
	res, err := db.Pool.Query(ctx, storedNotifications, apps, ids)
	if err != nil {
		return nil, err
	}
	stored := map[key]bool{}
	var k key
	if _, err := pgx.ForEachRow(res, []any{&k.app, &k.id}, func() error { stored[k] = true; return nil }); err != nil {
		return nil, err
	}
	var fresh []*row
	for _, r := range rows {
		if r.n.Failure == "" && !stored[key{r.n.AppID, r.n.NotifyID}] {
			fresh = append(fresh, r)
		}
	}
	return fresh, nil
}

// handle runs each row's handler and returns the rows whose handler
// decided a change (row.change), sorted for applying: by the state row
// each locks first, and for one row newest first. A row whose handler
// refuses it is failed; a row without a handler stays unhandled.
func (db *DB) handle(rows []*row) ([]*row, error) {
	var changed []*row
	for _, r := range rows {
		h, ok := db.registry.Handler(r.n.Method)
		if !ok {
			continue
		}
		change, err := h(r.n)
		var appErr *notify.Error
		switch {
		case errors.As(err, &appErr):
			r.out.Status, r.out.Error = notify.StatusFailed, appErr.Message
			continue
		case err != nil:
			return nil, err
		}
		r.change, r.stateRow = change, changeRow(change)
		changed = append(changed, r)
	}
	sort.SliceStable(changed, func(i, j int) bool {
		a, b := changed[i], changed[j]
		if a.stateRow != b.stateRow {
			return a.stateRow < b.stateRow
		}
		return newer(a.change, b.change)
	})
	return changed, nil
}

// insertStatement returns the statement that inserts the rows, or raises
// the delivery count of those already stored. With fromState, the status of
// a row with a change is read back from the state the change wrote (its
// authorization, or its history entry's applied flag); without, each row
// carries its status.
func insertStatement(rows []*row, fromState bool) (statement, error) {
	cols := struct {
		app, id, method, biz, channel, form, sn, status, errText, kind, ref []string
		params                                                              []string
		ts                                                                  []int64
		enc                                                                 []bool
		copies                                                              []int32
		received                                                            []time.Time
	}{}
	for _, r := range rows {
		n := r.n
		params, err := json.Marshal(n.Params)
		if err != nil {
			return statement{}, fmt.Errorf("store: unable to encode params: %w", err)
		}
		kind, ref := "", ""
		if fromState && r.change != nil {
			kind, ref = changeKind(r.change)
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
		cols.kind = append(cols.kind, kind)
		cols.ref = append(cols.ref, ref)
	}
	return statement{insertNotifications, []any{cols.app, cols.id, cols.method, cols.ts, cols.biz, cols.params,
		cols.enc, cols.channel, cols.form, cols.sn, cols.status, cols.errText, cols.copies, cols.received,
		cols.kind, cols.ref}}, nil
}

// readInserted reads the insert's answer: each row's id, whether it is
// new, and its stored status, error and delivery count.
func readInserted(res pgx.Rows, byKey map[key]*row) error {
	var (
		id       int64
		inserted bool
		k        key
		out      notify.Outcome
	)
	_, err := pgx.ForEachRow(res, []any{&id, &inserted, &k.app, &k.id, &out.Status, &out.Error, &out.DeliveryCount}, func() error {
		if r := byKey[k]; r != nil {
			r.id, r.inserted, r.out = id, inserted, out
		}
		return nil
	})
	return err
}

// applyIsolated runs each row's handler and applies the changes one by one
// behind savepoints, setting each row's status and error: a change
// Postgres refuses leaves its notification failed with the error, and the
// rest of the transaction intact.
func (db *DB) applyIsolated(ctx context.Context, tx pgx.Tx, rows []*row) error {
	changed, err := db.handle(rows)
	if err != nil {
		return err
	}
	for _, r := range changed {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		applied, err := applyChange(ctx, sp, r.change)
		switch {
		case err == nil:
			r.out.Status = notify.StatusStale
			if applied {
				r.out.Status = notify.StatusApplied
			}
			if err := sp.Commit(ctx); err != nil {
				return err
			}
			continue
		case retryable(err):
			return err
		}
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return rbErr
		}
		r.out.Status, r.out.Error = notify.StatusFailed, "store: "+err.Error()
	}
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
		if err := db.applyIsolated(ctx, tx, []*row{r}); err != nil {
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
