package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Ingest records n and applies it in one transaction, and returns once that
// transaction is committed. A notification already stored (same app_id and
// notify_id) only has its delivery count raised: Outcome.Duplicate is set
// and nothing else changes. It returns an EUNAVAILABLE *notify.Error when
// the database cannot be reached; nothing is then recorded.
func (db *DB) Ingest(ctx context.Context, n *notify.Notification) (notify.Outcome, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return notify.Outcome{}, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	out, err := db.ingestTx(ctx, tx, n)
	if err != nil {
		return notify.Outcome{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return notify.Outcome{}, unavailable(err)
	}
	return out, nil
}

const insertNotification = `
INSERT INTO notifications AS n (app_id, notify_id, msg_method, utc_timestamp, biz_content, params,
    encrypted, channel, content_form, cert_sn, status, error, received_at, last_received_at, processed_at)
VALUES ($1, $2, $3, NULLIF($4::bigint, 0), $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $13)
ON CONFLICT (app_id, notify_id) DO UPDATE
    SET delivery_count = n.delivery_count + 1, last_received_at = EXCLUDED.last_received_at
RETURNING id, xmax = 0, status, error, delivery_count`

// ingestTx records n within tx and, when it is new, applies it.
func (db *DB) ingestTx(ctx context.Context, tx pgx.Tx, n *notify.Notification) (notify.Outcome, error) {
	params, err := json.Marshal(n.Params)
	if err != nil {
		return notify.Outcome{}, fmt.Errorf("store: unable to encode params: %w", err)
	}
	status, errText := notify.StatusUnhandled, ""
	if n.Failure != "" {
		status, errText = notify.StatusFailed, n.Failure
	}
	var (
		id       int64
		inserted bool
		out      notify.Outcome
	)
	err = tx.QueryRow(ctx, insertNotification,
		n.AppID, n.NotifyID, n.Method, n.UTCTimestamp, n.BizContent, params,
		n.Encrypted, n.Channel, n.ContentForm, n.CertSN, status, errText, n.ReceivedAt.UTC(),
	).Scan(&id, &inserted, &out.Status, &out.Error, &out.DeliveryCount)
	if err != nil {
		return notify.Outcome{}, unavailable(err)
	}
	if !inserted {
		out.Duplicate = true
		return out, nil
	}
	if n.Failure != "" {
		return out, nil
	}
	out.Status, out.Error, err = db.apply(ctx, tx, n)
	if err != nil {
		return notify.Outcome{}, err
	}
	if out.Status != notify.StatusUnhandled {
		_, err = tx.Exec(ctx, `UPDATE notifications SET status = $2, error = $3 WHERE id = $1`, id, out.Status, out.Error)
		if err != nil {
			return notify.Outcome{}, unavailable(err)
		}
	}
	return out, nil
}

// apply runs n's handler within tx, behind a savepoint: a handler that fails
// on data (a value Postgres refuses) leaves the notification failed with the
// error instead of failing the delivery, so that it is kept and can be
// reprocessed. It returns an error only when the transaction itself is lost.
func (db *DB) apply(ctx context.Context, tx pgx.Tx, n *notify.Notification) (notify.Status, string, error) {
	h, ok := db.registry.Handler(n.Method)
	if !ok {
		return notify.StatusUnhandled, "", nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", "", unavailable(err)
	}
	status, err := h(ctx, txStore{tx: sp}, n)
	var appErr *notify.Error
	switch {
	case err == nil:
		if err := sp.Commit(ctx); err != nil {
			return "", "", unavailable(err)
		}
		return status, "", nil
	case errors.As(err, &appErr):
		if err := sp.Rollback(ctx); err != nil {
			return "", "", unavailable(err)
		}
		return notify.StatusFailed, appErr.Message, nil
	case retryable(err):
		return "", "", unavailable(err)
	default:
		if err := sp.Rollback(ctx); err != nil {
			return "", "", unavailable(err)
		}
		return notify.StatusFailed, "handler: " + err.Error(), nil
	}
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
	status, errText := notify.StatusFailed, n.Failure
	if n.Failure == "" {
		if status, errText, err = db.apply(ctx, tx, n); err != nil {
			return nil, err
		}
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
