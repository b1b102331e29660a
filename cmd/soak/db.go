package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// dbURL is the URL of database name on the soak's server (adminURL, as
// pg.sh start prints it, with another database).
func dbURL(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("-admin-url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// freshDB drops and creates database name, and returns its URL.
func (s *soak) freshDB(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	for _, q := range []string{"DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)", "CREATE DATABASE " + ident} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return "", fmt.Errorf("%s: %w", q, err)
		}
	}
	return dbURL(s.adminURL, name)
}

// queryRow runs one query on the database at dbURL and scans its row.
func queryRow(ctx context.Context, dbURL, sql string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// inbox counts the inbox rows of a run's notifications (notify_id
// prefix-...).
func inbox(ctx context.Context, dbURL, prefix string) (inboxFigures, error) {
	var f inboxFigures
	err := queryRow(ctx, dbURL, `
		SELECT count(*), count(DISTINCT notify_id), coalesce(sum(delivery_count), 0),
			coalesce(min(delivery_count), 0), coalesce(max(delivery_count), 0)
		FROM notifications WHERE notify_id LIKE $1 || '-%'`, []any{prefix},
		&f.Rows, &f.Distinct, &f.Deliveries, &f.MinDeliveries, &f.MaxDeliveries)
	return f, err
}

// history counts the history rows of a run's notifications, and how many
// there should be: one per stored audit or order notification (applied or
// stale).
func history(ctx context.Context, dbURL, prefix string) (historyFigures, error) {
	var f historyFigures
	err := queryRow(ctx, dbURL, `
		SELECT
			(SELECT count(*) FROM notifications WHERE notify_id LIKE $1 || '-%' AND status IN ('applied', 'stale')
				AND (msg_method LIKE 'alipay.open.mini.version.%' OR msg_method LIKE 'alipay.open.mini.merchant.%')),
			(SELECT count(*) FROM mini_app_audit_events WHERE notify_id LIKE $1 || '-%')
				+ (SELECT count(*) FROM mini_app_order_events WHERE notify_id LIKE $1 || '-%'),
			(SELECT count(DISTINCT notify_id) FROM mini_app_audit_events WHERE notify_id LIKE $1 || '-%')
				+ (SELECT count(DISTINCT notify_id) FROM mini_app_order_events WHERE notify_id LIKE $1 || '-%')`,
		[]any{prefix}, &f.Expected, &f.Rows, &f.Distinct)
	return f, err
}

// pairs reads where the pairs of runs prefixA (newer, audit.passed) and
// prefixB (older, audit.rejected) left their mini-apps, and which of each
// pair reached its gateway first (received_at: intake start). Pair i is
// notification i of both runs.
func pairs(ctx context.Context, dbURL, prefixA, prefixB string, f *replicasPairsFigures) error {
	err := queryRow(ctx, dbURL, `
		SELECT count(*), count(*) FILTER (WHERE audit_status = 'audit_passed' AND event_notify_id LIKE $1 || '-%')
		FROM mini_apps WHERE mini_app_id IN (SELECT mini_app_id FROM mini_app_audit_events WHERE notify_id LIKE $2 || '-%')`,
		[]any{prefixA, prefixB}, &f.Apps, &f.Newest)
	if err != nil {
		return err
	}
	return queryRow(ctx, dbURL, `
		SELECT count(*) FILTER (WHERE b.received_at > a.received_at), count(*) FILTER (WHERE b.received_at <= a.received_at)
		FROM notifications a JOIN notifications b ON split_part(b.notify_id, '-', 3) = split_part(a.notify_id, '-', 3)
		WHERE a.notify_id LIKE $1 || '-%' AND b.notify_id LIKE $2 || '-%'`,
		[]any{prefixA, prefixB}, &f.Late, &f.Early)
}

// webhookRows reads the database's side of the webhooks scenario: the
// webhook-ids of every event, the deliveries by status, and what the
// attempts recorded.
func webhookRows(ctx context.Context, dbURL string) (ids []string, f webhookDBFigures, err error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, f, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT 'evt_' || id FROM events ORDER BY id`)
	if err != nil {
		return nil, f, err
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, f, err
	}
	err = conn.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE status = 'dead'), coalesce(max(attempts), 0)
		FROM webhook_deliveries`).Scan(&f.Deliveries, &f.Delivered, &f.Pending, &f.Dead, &f.MaxAttempts)
	if err != nil {
		return nil, f, err
	}
	err = conn.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE status_code >= 500), count(*) FILTER (WHERE error LIKE 'no answer within%'),
			count(*) FILTER (WHERE error LIKE '%connection refused%'),
			count(*) FILTER (WHERE status_code IS NULL AND error NOT LIKE 'no answer within%' AND error NOT LIKE '%connection refused%')
		FROM webhook_attempts`).Scan(&f.Attempts, &f.Attempts5xx, &f.TimedOut, &f.Refused, &f.OtherNoAnswer)
	return ids, f, err
}
