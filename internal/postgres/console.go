package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// The ops console's reads and its sessions (internal/console). Each
// statement runs planned for its actual parameters (QueryExecModeExec: an
// unnamed statement), so that a time window or a prefix is planned as
// what it is rather than by a generic plan's guess; every one of them is
// served by an index (console_test.go checks the plans on a filled table).

// CreateConsoleSession stores a console session under the hash of its id,
// and deletes the sessions that have expired. It returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) CreateConsoleSession(ctx context.Context, idHash, tokenHash []byte, csrf string, expiresAt time.Time) error {
	_, err := db.Pool.Exec(ctx, `WITH expired AS (DELETE FROM console_sessions WHERE expires_at <= now())
        INSERT INTO console_sessions (id_hash, token_hash, csrf_token, expires_at) VALUES ($1, $2, $3, $4)`,
		idHash, tokenHash, csrf, expiresAt)
	return unavailable(err)
}

// ConsoleSession returns the unexpired console session whose id hashes to
// idHash. It returns an ENOTFOUND *notify.Error when there is none (never
// made, signed out, or expired), an EUNAVAILABLE one when the database
// cannot be reached.
func (db *DB) ConsoleSession(ctx context.Context, idHash []byte) (*view.ConsoleSession, error) {
	var s view.ConsoleSession
	err := db.Pool.QueryRow(ctx, `SELECT token_hash, csrf_token, created_at, expires_at FROM console_sessions
        WHERE id_hash = $1 AND expires_at > now()`, idHash).Scan(&s.TokenHash, &s.CSRFToken, &s.CreatedAt, &s.ExpiresAt)
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "no_session", "no such console session"))
	}
	return &s, nil
}

// DeleteConsoleSession ends the console session whose id hashes to idHash,
// for every replica; ending one that does not exist is no error. It
// returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) DeleteConsoleSession(ctx context.Context, idHash []byte) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM console_sessions WHERE id_hash = $1`, idHash)
	return unavailable(err)
}

// intakeCounts counts, in $3 buckets of $2 back from $1, the
// notifications first received in each: all of them (an index-only range
// count on notifications_received_idx) and those stale, unhandled and
// failed (on the partial notifications_not_applied_idx). A count per
// bucket rather than one grouped scan: computing a bucket for every row
// cost five times the counting. Bucket 0 ends at $1.
const intakeCounts = `
    SELECT i,
        (SELECT count(*) FROM notifications WHERE received_at > lo AND received_at <= hi),
        (SELECT count(*) FROM notifications WHERE status = 'stale' AND received_at > lo AND received_at <= hi),
        (SELECT count(*) FROM notifications WHERE status = 'unhandled' AND received_at > lo AND received_at <= hi),
        (SELECT count(*) FROM notifications WHERE status = 'failed' AND received_at > lo AND received_at <= hi)
    FROM (SELECT i, $1::timestamptz - (i + 1) * $2::interval AS lo, $1::timestamptz - i * $2::interval AS hi
          FROM generate_series(0, $3::int - 1) i) b
    ORDER BY i`

// IntakeCounts returns what intake stored in the window before until, in
// buckets of bucket (the newest first, window/bucket of them, empty ones
// included): the notifications first received in each, by their status
// now. A delivery Alipay repeats is counted once, when it first came; one
// the gateway refused (answered fail) is not stored, so not counted here
// (see metrics.Recent). Its cost grows with the notifications in the
// window (an index-only count: about 12 ms per 100,000 on a small
// machine). It returns an EINVALID *notify.Error for a bucket that does
// not divide the window, an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) IntakeCounts(ctx context.Context, until time.Time, window, bucket time.Duration) ([]view.IntakeBucket, error) {
	if bucket <= 0 || window < bucket || window%bucket != 0 {
		return nil, notify.Errorf(notify.EINVALID, "bad_window", "bucket %s does not divide window %s", bucket, window)
	}
	n := int(window / bucket)
	out := make([]view.IntakeBucket, n)
	rows, err := db.Pool.Query(ctx, intakeCounts, pgx.QueryExecModeExec, until, bucket, n)
	if err != nil {
		return nil, unavailable(err)
	}
	var (
		i                          int
		all, stale, unhandled, bad int
	)
	_, err = pgx.ForEachRow(rows, []any{&i, &all, &stale, &unhandled, &bad}, func() error {
		if i >= 0 && i < n {
			out[i] = view.IntakeBucket{Start: until.Add(-time.Duration(i+1) * bucket),
				Applied: all - stale - unhandled - bad, Stale: stale, Unhandled: unhandled, Failed: bad}
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

const merchantColumns = authorizationColumns + `, refreshed_at, refresh_attempted_at, refresh_error, event_notify_id`

// merchantsQuery is Merchants' statement: the primary key, or
// authorizations_auth_app_idx for a prefix, or authorizations_status_idx.
const merchantsQuery = `SELECT ` + merchantColumns + ` FROM authorizations
    WHERE ($1 = '' OR auth_app_id = $1)
      AND ($2 = '' OR (auth_app_id >= $2 AND starts_with(auth_app_id, $2)))
      AND ($3 = '' OR status = $3)
      AND ($4 = false OR refresh_error <> '')
      AND ($5::timestamptz IS NULL OR (status = 'cancelled' AND cancelled_at >= $5))
      AND ($6::timestamptz IS NULL OR (status = 'authorized' AND expires_at < $6))
      AND ($7 = '' OR (auth_app_id, app_id) > ($7, $8))
    ORDER BY auth_app_id, app_id LIMIT $9`

// Merchants lists authorizations with the token refresher's bookkeeping, by
// auth_app_id and app_id, a page at a time: of one merchant app, or those
// whose auth_app_id starts with a prefix, of a status, or with a problem
// (a failed refresh, a token expiring before f.Until, cancelled since
// f.Since). It returns an EINVALID *notify.Error for a cursor it did not
// make, an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) Merchants(ctx context.Context, f view.MerchantFilter) ([]*view.Merchant, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		AuthAppID string `json:"a"`
		AppID     string `json:"i"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	var since, until *time.Time
	switch f.Problem {
	case view.MerchantCancelled:
		since = &f.Since
	case view.MerchantExpiring:
		until = &f.Until
	}
	rows, err := db.Pool.Query(ctx, merchantsQuery, pgx.QueryExecModeExec,
		f.AuthAppID, f.Prefix, f.Status, f.Problem == view.MerchantRefreshError, since, until, after.AuthAppID, after.AppID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, func(row pgx.Row) (*view.Merchant, error) {
		var m view.Merchant
		err := row.Scan(append(authorizationDest(&m.Authorization), &m.RefreshedAt, &m.RefreshAttemptedAt, &m.RefreshError, &m.EventNotifyID)...)
		return &m, err
	})
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.Merchant) any {
		after.AuthAppID, after.AppID = last.AuthAppID, last.AppID
		return after
	})
}

// MiniApps lists mini-apps' audit states (without their versions) by
// mini_app_id, a page at a time: those of f.IDs, or starting with a prefix,
// or of an audit status. It returns an EINVALID *notify.Error for a cursor
// it did not make, an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) MiniApps(ctx context.Context, f view.MiniAppFilter) ([]*view.MiniApp, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		ID string `json:"m"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT mini_app_id, app_id, audit_status, mini_app_version, updated_at FROM mini_apps
        WHERE ($1::text[] IS NULL OR mini_app_id = ANY($1))
          AND ($2 = '' OR (mini_app_id >= $2 AND starts_with(mini_app_id, $2)))
          AND ($3 = '' OR audit_status = $3)
          AND ($4 = '' OR mini_app_id > $4)
        ORDER BY mini_app_id LIMIT $5`, pgx.QueryExecModeExec, f.IDs, f.Prefix, f.AuditStatus, after.ID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, func(row pgx.Row) (*view.MiniApp, error) {
		var m view.MiniApp
		err := row.Scan(&m.MiniAppID, &m.AppID, &m.AuditStatus, &m.MiniAppVersion, &m.UpdatedAt)
		return &m, err
	})
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.MiniApp) any {
		after.ID = last.MiniAppID
		return after
	})
}

// ordersOf is OrdersOf's statement: mini_app_orders_mini_app_idx and
// mini_app_orders_pid_idx (a BitmapOr).
const ordersOf = `SELECT ` + orderColumns + ` FROM mini_app_orders
    WHERE (mini_app_id <> '' AND mini_app_id = ANY($1)) OR (pid <> '' AND pid = ANY($2))
    ORDER BY updated_at DESC, order_no LIMIT $3`

// OrdersOf returns the mini-app creation orders that made one of
// miniAppIDs or were placed for one of pids (merchants' PIDs), newest
// first, at most limit (without their histories). It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) OrdersOf(ctx context.Context, miniAppIDs, pids []string, limit int) ([]*view.MiniAppOrder, error) {
	rows, err := db.Pool.Query(ctx, ordersOf, pgx.QueryExecModeExec, nonNil(miniAppIDs), nonNil(pids), clampLimit(limit))
	if err != nil {
		return nil, unavailable(err)
	}
	return collect(rows, scanOrder)
}

// merchantNotifications finds a merchant's notifications through what they
// changed: its authorization events ($1: events_auth_app_idx) and its
// authorization's last notification, its mini-apps' audits ($2:
// mini_app_audit_events_app_idx) and its orders' history ($3:
// mini_app_order_events_order_idx); each part newest first and at most $4,
// then the inbox rows by their unique key.
const merchantNotifications = `
    WITH refs AS (
        (SELECT app_id, notify_id FROM events
         WHERE type IN ('authorization.granted', 'authorization.cancelled') AND data ->> 'auth_app_id' = $1
         ORDER BY data ->> 'auth_app_id', id DESC LIMIT $4)
        UNION
        SELECT app_id, event_notify_id FROM authorizations WHERE auth_app_id = $1
        UNION
        (SELECT a.app_id, a.notify_id FROM unnest($2::text[]) m(id)
         CROSS JOIN LATERAL (SELECT app_id, notify_id FROM mini_app_audit_events e
             WHERE e.mini_app_id = m.id ORDER BY event_at DESC, notify_id DESC LIMIT $4) a)
        UNION
        (SELECT o.app_id, o.notify_id FROM unnest($3::text[]) r(no)
         CROSS JOIN LATERAL (SELECT app_id, notify_id FROM mini_app_order_events e
             WHERE e.order_no = r.no ORDER BY event_at DESC, notify_id DESC LIMIT $4) o)
    )
    SELECT ` + notificationColumns + ` FROM notifications n
    WHERE (n.notify_id, n.app_id) IN (SELECT notify_id, app_id FROM refs)
    ORDER BY n.received_at DESC, n.id DESC LIMIT $4`

// MerchantNotifications returns a merchant app's latest notifications, at
// most limit, newest first: those that changed its authorization, the
// audits of miniAppIDs (its mini-apps) and the history of orderNos (its
// orders). It returns an EUNAVAILABLE *notify.Error when the database
// cannot be reached.
func (db *DB) MerchantNotifications(ctx context.Context, authAppID string, miniAppIDs, orderNos []string, limit int) ([]*view.StoredNotification, error) {
	rows, err := db.Pool.Query(ctx, merchantNotifications, pgx.QueryExecModeExec, authAppID, nonNil(miniAppIDs), nonNil(orderNos), clampLimit(limit))
	if err != nil {
		return nil, unavailable(err)
	}
	return collect(rows, scanNotification)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// reconcileSummary counts the drift records and the errors reconciliation
// wrote since $1. Neither table has an index on its time, but both are
// written in the order of their ids (an identity, the time a default of
// now()), so each count is a range of the primary key: above the newest
// row older than $1, which a backward scan of the key finds after reading
// the rows since $1. Both cost what they count, whatever the tables hold.
// (Rows committed out of order within the same milliseconds may straddle
// $1: a count is exact but for those.)
const reconcileSummary = `SELECT
    (SELECT count(*) FROM reconcile_drift WHERE created_at >= $1
        AND id > COALESCE((SELECT id FROM reconcile_drift WHERE created_at < $1 ORDER BY id DESC LIMIT 1), 0)),
    (SELECT count(*) FROM reconcile_errors WHERE at >= $1
        AND id > COALESCE((SELECT id FROM reconcile_errors WHERE at < $1 ORDER BY id DESC LIMIT 1), 0))`

// ReconcileSummary returns what reconciliation recorded since since: its
// repairs (drift records) and its errors. It returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) ReconcileSummary(ctx context.Context, since time.Time) (*view.ReconcileSummary, error) {
	s := &view.ReconcileSummary{Since: since}
	if err := db.Pool.QueryRow(ctx, reconcileSummary, pgx.QueryExecModeExec, since).Scan(&s.Repaired, &s.Errors); err != nil {
		return nil, unavailable(err)
	}
	return s, nil
}

// batchList is BatchList's statement: the batches newest first (the
// primary key backwards), each with its recipients left (pending, sending)
// and unknown: ranges of template_message_recipients_status_idx
// (index-only, one per status so that each is an index condition) whose
// cost is what they count: nothing for a batch that ended with none
// unknown, however many it sent.
const batchList = `SELECT b.id, b.app_id, b.auth_app_id, b.user_template_id, b.status, b.stop_reason, b.total, b.created_at, b.finished_at,
        (SELECT count(*) FROM template_message_recipients r WHERE r.batch_id = b.id AND r.status = 'pending')
          + (SELECT count(*) FROM template_message_recipients r WHERE r.batch_id = b.id AND r.status = 'sending'),
        (SELECT count(*) FROM template_message_recipients r WHERE r.batch_id = b.id AND r.status = 'unknown')
    FROM template_message_batches b
    WHERE ($1 = '' OR b.app_id = $1) AND ($2 = '' OR b.status = $2) AND ($3::bigint = 0 OR b.id < $3)
    ORDER BY b.id DESC LIMIT $4`

// BatchList lists template message batches newest first, a page at a
// time, of an ISV app or a status, with their progress (not their counts
// by status, which Batch reads: a list of batches of 100,000 recipients
// would read them all). It returns an EINVALID *notify.Error for a cursor
// it did not make, and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) BatchList(ctx context.Context, f view.BatchFilter) ([]*view.BatchProgress, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		ID int64 `json:"i"`
	}
	if f.After != "" {
		if err := decodeCursor(f.After, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, batchList, pgx.QueryExecModeExec, f.AppID, f.Status, after.ID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, func(row pgx.Row) (*view.BatchProgress, error) {
		var p view.BatchProgress
		err := row.Scan(&p.ID, &p.AppID, &p.AuthAppID, &p.UserTemplateID, &p.Status, &p.StopReason, &p.Total, &p.CreatedAt, &p.FinishedAt,
			&p.Left, &p.Unknown)
		return &p, err
	})
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.BatchProgress) any {
		after.ID = last.ID
		return after
	})
}
