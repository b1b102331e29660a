package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Reprocess decides again a stored notification that ended failed or
// unhandled (after an upgrade or a configuration fix) and applies what
// decide now says, in one transaction holding the row's lock, so that
// replicas reprocess it once. decide is the application's step: decode the
// stored notification again if need be, and run its handler
// (notify.Registry.Decide). A notification in any other status is returned
// unchanged: reprocessing is idempotent. The events of a change that now
// applies are written with it; those the notification made when it was
// stored are not written again. It returns an ENOTFOUND
// *notify.Error for an unknown notification, decide's error when it
// refuses the notification (which then stays as it was), and an
// EUNAVAILABLE one when the database cannot be reached.
func (db *DB) Reprocess(ctx context.Context, appID, notifyID string, decide func(*notify.Notification) (notify.Decided, error)) (*view.StoredNotification, error) {
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
	d, err := decide(n)
	if err != nil {
		return nil, err
	}
	e := &entry{Decided: d, id: stored.ID, apply: d.Change != nil}
	e.out.Status, e.out.Error = d.Status, d.Error
	if e.apply {
		if err := applyIsolated(ctx, tx, []*entry{e}); err != nil {
			return nil, unavailable(err)
		}
	}
	kind, ref := "", ""
	if e.apply {
		kind, ref = changeKind(e.Change)
	}
	var status notify.Status
	var errText string
	err = tx.QueryRow(ctx, outcomeQuery, n.AppID, n.NotifyID, e.out.Status, e.out.Error, kind, ref).Scan(&status, &errText)
	if err != nil {
		return nil, unavailable(err)
	}
	_, err = tx.Exec(ctx, `UPDATE notifications SET status = $2, error = $3, biz_content = $4, processed_at = now() WHERE id = $1`,
		stored.ID, status, errText, n.BizContent)
	if err != nil {
		return nil, unavailable(err)
	}
	if err := writeEvents(ctx, tx, n.AppID, n.NotifyID, status, d.Events); err != nil {
		return nil, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, unavailable(err)
	}
	stored.Status, stored.Error, stored.Biz, stored.BizContent = status, errText, n.BizContent, bizJSON(n.BizContent)
	return stored, nil
}

// writeEvents writes the events of one notification (or authorization
// flow) in tx, as insertNotifications does for a batch: a state event only
// when status is applied, none a second time.
func writeEvents(ctx context.Context, tx pgx.Tx, appID, notifyID string, status notify.Status, events []notify.Event) error {
	var c eventColumns
	c.add(&notify.Notification{AppID: appID, NotifyID: notifyID}, events)
	_, err := tx.Exec(ctx, insertEvents, appID, notifyID, status, c.typ, c.at, c.data, c.ifApplied)
	return err
}

const insertEvents = `
INSERT INTO events (app_id, notify_id, type, occurred_at, data)
SELECT $1, $2, event.type, event.occurred_at, event.data
FROM unnest($4::text[], $5::timestamptz[], $6::jsonb[], $7::boolean[]) AS event(type, occurred_at, data, if_applied)
WHERE NOT event.if_applied OR $3 = 'applied'
ON CONFLICT (app_id, notify_id, type) DO NOTHING`
