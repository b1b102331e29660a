package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Ingest records n and applies it in one transaction, and returns once that
// transaction is committed. A notification already stored (same app_id and
// notify_id) only has its delivery count raised: Outcome.Duplicate is set
// and nothing else changes. One whose signed content is stored under
// another notify_id changes nothing (Outcome.ReplayOf). It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached; an
// ECONFLICT one when n's notify_id is stored with other signed content
// from the same channel (the first is kept); and the *notify.Error of a
// handler that refuses n (a grant that cannot be sealed, a time ahead of
// the clock). Nothing is recorded then.
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
// returns once it is committed, one Result per notification in order, each
// as Ingest describes. Copies of one notification within ns count as
// deliveries of it. When the batch fails on data (a value Postgres
// refuses), each notification is ingested again alone, so that one bad
// notification fails alone and is kept as failed; when the database is
// unavailable, every Result carries an EUNAVAILABLE *notify.Error and
// nothing is recorded.
func (db *DB) IngestBatch(ctx context.Context, ns []*notify.Notification) []Result {
	out, err := db.ingest(ctx, ns)
	for try := 0; try < 2 && conflict(err); try++ {
		out, err = db.ingest(ctx, ns)
	}
	if err == nil {
		return out
	}
	out = make([]Result, len(ns))
	if retryable(err) {
		for i := range out {
			out[i].Err = unavailable(err)
		}
		return out
	}
	for i, n := range ns {
		one, err := db.ingestIsolated(ctx, n)
		if err != nil {
			one.Err = unavailable(err)
		}
		out[i] = one
	}
	return out
}

// The inbox insert. Each row's status is read back from the state its
// change wrote (outcomeFromState), so that the change statements and this
// insert go in one round trip and each row is written once. A row whose
// notify_id is stored already only raises its delivery count, unless it
// came by the same channel with other signed content: then it is left out
// of RETURNING, a conflict.
const insertNotifications = `
INSERT INTO notifications AS n (app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted,
    channel, content_form, content_digest, cert_sn, status, error, delivery_count, received_at, last_received_at,
    processed_at)
SELECT app_id, notify_id, msg_method, NULLIF(utc_timestamp, 0), biz_content, params::json, encrypted,
    channel, content_form, content_digest, cert_sn, ` + outcomeFromState + `, copies, received_at, received_at,
    received_at
FROM (SELECT *, ` + appliedFromState + ` AS applied
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::boolean[],
                  $8::text[], $9::text[], $10::bytea[], $11::text[], $12::text[], $13::text[], $14::int[],
                  $15::timestamptz[], $16::text[], $17::text[])
          AS u(app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted, channel,
               content_form, content_digest, cert_sn, status, error, copies, received_at, change_kind, change_ref)
      OFFSET 0) AS u
ON CONFLICT (app_id, notify_id) DO UPDATE
    SET delivery_count = n.delivery_count + EXCLUDED.delivery_count,
        last_received_at = EXCLUDED.last_received_at
    WHERE n.channel <> EXCLUDED.channel OR n.content_digest IS NULL OR EXCLUDED.content_digest IS NULL
       OR n.content_digest = EXCLUDED.content_digest
RETURNING id, xmax = 0, app_id, notify_id, status, error, delivery_count`

// appliedFromState is, as one expression over the columns app_id,
// notify_id, change_kind and change_ref of a notification's row, whether
// its change applied: an authorization records the notification that set
// it; an order's or an audit's history entry records whether it applied,
// and is missing (NULL) only when the order or the mini-app belongs to
// another app. (OFFSET 0 around it, in the queries that use it, keeps
// Postgres from computing it once per use.)
const appliedFromState = `CASE u.change_kind
    WHEN 'auth' THEN (SELECT x.event_notify_id = u.notify_id FROM authorizations x
                      WHERE x.app_id = u.app_id AND x.auth_app_id = u.change_ref)
    WHEN 'order' THEN (SELECT x.applied FROM mini_app_order_events x WHERE x.app_id = u.app_id AND x.notify_id = u.notify_id)
    WHEN 'audit' THEN (SELECT x.applied FROM mini_app_audit_events x WHERE x.app_id = u.app_id AND x.notify_id = u.notify_id)
END`

// outcomeFromState is a notification's status and error, two select-list
// items over its row's status, error, change_kind, change_ref and applied
// (appliedFromState): without a change, the status and error the row
// carries; with one, applied or stale, or failed when the change's entity
// belongs to another app.
const outcomeFromState = `
    CASE WHEN u.change_kind = '' THEN u.status WHEN applied THEN 'applied' WHEN NOT applied THEN 'stale' ELSE 'failed' END,
    CASE WHEN u.change_kind = '' OR applied IS NOT NULL THEN u.error
         ELSE '` + foreignPrefix + `' || CASE u.change_kind WHEN 'order' THEN 'order ' ELSE 'mini-app ' END || u.change_ref ||
              ' belongs to app ' || COALESCE(CASE u.change_kind
                  WHEN 'order' THEN (SELECT o.app_id FROM mini_app_orders o WHERE o.order_no = u.change_ref)
                  WHEN 'audit' THEN (SELECT m.app_id FROM mini_apps m WHERE m.mini_app_id = u.change_ref) END, '?') ||
              ': a notification of app ' || u.app_id || ' changes nothing'
    END`

// outcomeQuery is outcomeFromState for one notification, for Reprocess.
const outcomeQuery = `
SELECT ` + outcomeFromState + `
FROM (SELECT *, ` + appliedFromState + ` AS applied
      FROM (VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text))
          AS u(app_id, notify_id, status, error, change_kind, change_ref)
      OFFSET 0) AS u`

// foreignPrefix starts the error of a notification failed because its
// entity belongs to another app (see outcomeFromState).
const foreignPrefix = "foreign: "

// row is one distinct notification of a batch, and what became of it.
type row struct {
	n      *notify.Notification
	copies int // deliveries of it in the batch
	// replays, when set, is the row of the batch, or the stored
	// notification (ReplayOf), that holds n's signed content under another
	// notify_id: n is stored nowhere and changes nothing.
	replays *row
	// err, when set, refuses n: a handler refused it, or its notify_id is
	// stored with other signed content (a conflict). Nothing is stored.
	err      error
	change   notify.Change // what its handler decided, if it ran and decided
	stateRow string        // changeRow(change)
	id       int64
	inserted bool
	out      notify.Outcome
}

type key struct{ app, id string }

// ingest runs one batch in two round trips. The first asks which of its
// notifications are stored already, by key or by signed content, outside
// any transaction: handlers run only for the others, so that a resend
// costs little. That look-up is an optimisation, not the guarantee: a
// change applied twice has no second effect (state compares event
// identity, history is unique per notification), the insert's ON CONFLICT
// decides what is new, and the unique index on content_digest fails a
// batch that races another one with the same signed content under another
// notify_id (it is then run again, and finds it).
//
// The second sends the change statements and the inbox insert together,
// one implicit transaction that commits when the last of them is done
// (group commit: one WAL flush for the batch). The insert reads each
// change's outcome back from the state it changed (see insertNotifications),
// so that nothing waits for an answer in between, and each inbox row is
// written once, with its final status.
func (db *DB) ingest(ctx context.Context, ns []*notify.Notification) ([]Result, error) {
	rows, of := distinct(ns)
	fresh, err := db.lookUp(ctx, rows)
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
	ins, err := insertStatement(rows)
	if err != nil {
		return nil, err
	}
	batch := &pgx.Batch{}
	for _, st := range stmts {
		batch.Queue(st.sql, st.args...) // their answers are read back by the insert
	}
	if ins != nil {
		batch.Queue(ins.sql, ins.args...).Query(func(res pgx.Rows) error { return readInserted(res, rows) })
	}
	if err := db.Pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	return results(ns, of), nil
}

// ingestIsolated ingests one notification whose batch failed on data, in
// an explicit transaction with its change behind a savepoint: a change
// Postgres refuses leaves it failed with the error, and it is still kept.
func (db *DB) ingestIsolated(ctx context.Context, n *notify.Notification) (Result, error) {
	rows, of := distinct([]*notify.Notification{n})
	fresh, err := db.lookUp(ctx, rows)
	if err != nil {
		return Result{}, err
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := db.applyIsolated(ctx, tx, fresh); err != nil {
		return Result{}, err
	}
	if ins, err := insertStatement(rows); err != nil {
		return Result{}, err
	} else if ins != nil {
		res, err := tx.Query(ctx, ins.sql, ins.args...)
		if err != nil {
			return Result{}, err
		}
		if err := readInserted(res, rows); err != nil {
			return Result{}, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, err
	}
	return results([]*notify.Notification{n}, of)[0], nil
}

// distinct returns the distinct notifications of ns as rows, in the order
// of their keys, and the row of each of ns. Copies of a notification count
// as deliveries of it; a copy of its key with other signed content from
// the same channel is a conflict, and one with its signed content under
// another key replays it. A multi-row upsert may not touch a row twice
// (SQLSTATE 21000), and concurrent batches that lock rows in one order wait
// for each other rather than deadlock.
func distinct(ns []*notify.Notification) ([]*row, []*row) {
	byKey := make(map[key]*row, len(ns))
	byDigest := make(map[string]*row, len(ns))
	rows := make([]*row, 0, len(ns))
	of := make([]*row, len(ns))
	for i, n := range ns {
		k := key{n.AppID, n.NotifyID}
		if r, ok := byKey[k]; ok {
			if r.n.Channel == n.Channel && !bytes.Equal(r.n.ContentDigest, n.ContentDigest) &&
				r.n.ContentDigest != nil && n.ContentDigest != nil {
				of[i] = &row{n: n, err: conflictError(n)}
				continue
			}
			r.copies++
			of[i] = r
			continue
		}
		if len(n.ContentDigest) > 0 {
			if r, ok := byDigest[string(n.ContentDigest)]; ok {
				of[i] = &row{n: n, replays: r}
				continue
			}
		}
		r := &row{n: n, copies: 1}
		r.out.Status = notify.StatusUnhandled
		if n.Failure != "" {
			r.out.Status, r.out.Error = notify.StatusFailed, n.Failure
		}
		byKey[k] = r
		if len(n.ContentDigest) > 0 {
			byDigest[string(n.ContentDigest)] = r
		}
		rows = append(rows, r)
		of[i] = r
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].n, rows[j].n
		return a.AppID < b.AppID || a.AppID == b.AppID && a.NotifyID < b.NotifyID
	})
	return rows, of
}

// conflictError is the error of a delivery whose notify_id is stored with
// other signed content from the same channel.
func conflictError(n *notify.Notification) error {
	return notify.Errorf(notify.ECONFLICT, "notify_id_conflict",
		"notify_id %s of app %s is stored with other signed content: the first is kept, this one is refused", n.NotifyID, n.AppID)
}

// results returns each of ns's result; a copy after the first, or a
// notification stored before, is a duplicate.
func results(ns []*notify.Notification, of []*row) []Result {
	out := make([]Result, len(ns))
	first := make(map[*row]bool, len(of))
	for i := range ns {
		r := of[i]
		switch {
		case r.err != nil:
			out[i].Err = r.err
			continue
		case r.replays != nil:
			orig := r.replays
			if orig.err != nil {
				out[i].Err = orig.err
				continue
			}
			out[i].Outcome = orig.out
			out[i].Outcome.Duplicate = true
			out[i].Outcome.ReplayOf = orig.n.NotifyID
			continue
		}
		out[i].Outcome = r.out
		out[i].Outcome.Duplicate = !r.inserted || first[r]
		first[r] = true
	}
	return out
}

// storedNotifications answers which of the given notifications are stored:
// by key (app_id, notify_id), or by signed content under another key (then
// with that notification's notify_id, status and delivery count). Here,
// and in insertNotifications, a look-up by key is a scalar subquery or a
// lateral probe: it is planned as an index probe per key even while the
// tables are empty, and a prepared statement's plan is kept (a semi-join
// planned on empty tables hashes a sequential scan of the inbox, and keeps
// doing so as it grows, until the next ANALYZE).
const storedNotifications = `
SELECT a, i, stored, orig,
    CASE WHEN orig IS NOT NULL THEN (SELECT n.status FROM notifications n WHERE n.content_digest = u.d) END,
    CASE WHEN orig IS NOT NULL THEN (SELECT n.delivery_count FROM notifications n WHERE n.content_digest = u.d) END
FROM (SELECT a, i, d, stored,
          CASE WHEN NOT stored THEN (SELECT n.notify_id FROM notifications n WHERE n.content_digest = u.d) END AS orig
      FROM (SELECT a, i, d, COALESCE((SELECT true FROM notifications n WHERE n.notify_id = u.i AND n.app_id = u.a), false) AS stored
            FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(a, i, d) OFFSET 0) AS u
      OFFSET 0) AS u
WHERE stored OR orig IS NOT NULL`

// lookUp marks the rows whose signed content is stored under another key
// as replays, and returns the rows to run handlers for: those that did not
// fail decoding and are stored neither by key nor by content.
func (db *DB) lookUp(ctx context.Context, rows []*row) ([]*row, error) {
	apps, ids, digests := make([]string, len(rows)), make([]string, len(rows)), make([][]byte, len(rows))
	for i, r := range rows {
		apps[i], ids[i], digests[i] = r.n.AppID, r.n.NotifyID, r.n.ContentDigest
	}
	res, err := db.Pool.Query(ctx, storedNotifications, apps, ids, digests)
	if err != nil {
		return nil, err
	}
	stored := map[key]bool{}
	replayed := map[key]*row{}
	var (
		k      key
		byKey  bool
		origID *string
		status *string
		count  *int
	)
	_, err = pgx.ForEachRow(res, []any{&k.app, &k.id, &byKey, &origID, &status, &count}, func() error {
		if byKey {
			stored[k] = true
		} else if origID != nil {
			orig := &row{n: &notify.Notification{AppID: k.app, NotifyID: *origID}}
			orig.out.Status, orig.out.DeliveryCount = notify.Status(*status), *count
			replayed[k] = orig
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var fresh []*row
	for _, r := range rows {
		k := key{r.n.AppID, r.n.NotifyID}
		if orig := replayed[k]; orig != nil {
			r.replays = orig
			continue
		}
		if r.n.Failure == "" && !stored[k] {
			fresh = append(fresh, r)
		}
	}
	return fresh, nil
}

// handle runs each row's handler and returns the rows whose handler
// decided a change (row.change), sorted for applying: by the state row
// each locks first, and for one row newest first. A row whose handler
// finds it unusable is failed; one whose handler refuses it is refused
// (row.err); a row without a handler stays unhandled.
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
		case notify.Refused(err):
			r.err = err
			continue
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

// insertStatement returns the statement that inserts the rows that are
// neither refused nor replays, or raises the delivery count of those
// already stored; nil when there is none. The status of a row with a
// change is read back from the state the change wrote; a row without one
// carries its status.
func insertStatement(rows []*row) (*statement, error) {
	cols := struct {
		app, id, method, biz, channel, form, sn, status, errText, kind, ref []string
		params                                                              []string
		digest                                                              [][]byte
		ts                                                                  []int64
		enc                                                                 []bool
		copies                                                              []int32
		received                                                            []time.Time
	}{}
	for _, r := range rows {
		if r.err != nil || r.replays != nil {
			continue
		}
		n := r.n
		params, err := json.Marshal(n.Params)
		if err != nil {
			return nil, fmt.Errorf("store: unable to encode params: %w", err)
		}
		kind, ref := "", ""
		if r.change != nil {
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
		cols.digest = append(cols.digest, n.ContentDigest)
		cols.sn = append(cols.sn, n.CertSN)
		cols.status = append(cols.status, string(r.out.Status))
		cols.errText = append(cols.errText, r.out.Error)
		cols.copies = append(cols.copies, int32(r.copies))
		cols.received = append(cols.received, n.ReceivedAt.UTC())
		cols.kind = append(cols.kind, kind)
		cols.ref = append(cols.ref, ref)
	}
	if len(cols.app) == 0 {
		return nil, nil
	}
	return &statement{insertNotifications, []any{cols.app, cols.id, cols.method, cols.ts, cols.biz, cols.params,
		cols.enc, cols.channel, cols.form, cols.digest, cols.sn, cols.status, cols.errText, cols.copies,
		cols.received, cols.kind, cols.ref}}, nil
}

// readInserted reads the insert's answer: each row's id, whether it is
// new, and its stored status, error and delivery count. A row the insert
// was given but did not answer is a conflict: its notify_id is stored with
// other signed content from the same channel.
func readInserted(res pgx.Rows, rows []*row) error {
	byKey := make(map[key]*row, len(rows))
	for _, r := range rows {
		if r.err == nil && r.replays == nil {
			byKey[key{r.n.AppID, r.n.NotifyID}] = r
		}
	}
	var (
		id       int64
		inserted bool
		k        key
		out      notify.Outcome
	)
	answered := make(map[*row]bool, len(byKey))
	_, err := pgx.ForEachRow(res, []any{&id, &inserted, &k.app, &k.id, &out.Status, &out.Error, &out.DeliveryCount}, func() error {
		if r := byKey[k]; r != nil {
			r.id, r.inserted, r.out = id, inserted, out
			r.out.Foreign = out.Status == notify.StatusFailed && strings.HasPrefix(out.Error, foreignPrefix)
			answered[r] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range byKey {
		if !answered[r] {
			r.err = conflictError(r.n)
		}
	}
	return nil
}

// applyIsolated runs each row's handler and applies the changes one by one
// behind savepoints: a change Postgres refuses leaves its notification
// failed with the error (and no change, so that the insert keeps that
// status), and the rest of the transaction intact.
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
		_, err = applyChange(ctx, sp, r.change)
		switch {
		case err == nil:
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
		r.change = nil
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
func (db *DB) Reprocess(ctx context.Context, appID, notifyID string, redecode func(*notify.Notification)) (*view.StoredNotification, error) {
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
		if r.err != nil {
			return nil, r.err // the handler refuses it now: it stays as it was
		}
	}
	kind, ref := "", ""
	if r.change != nil {
		kind, ref = changeKind(r.change)
	}
	var status notify.Status
	var errText string
	err = tx.QueryRow(ctx, outcomeQuery, n.AppID, n.NotifyID, r.out.Status, r.out.Error, kind, ref).Scan(&status, &errText)
	if err != nil {
		return nil, unavailable(err)
	}
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
