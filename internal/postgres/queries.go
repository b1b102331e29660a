package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

const notificationColumns = `id, notify_id, app_id, msg_method, utc_timestamp, received_at, processed_at,
    status, error, delivery_count, channel, encrypted, content_form, biz_content, params`

func scanNotification(row pgx.Row) (*view.StoredNotification, error) {
	var n view.StoredNotification
	var params []byte
	err := row.Scan(&n.ID, &n.NotifyID, &n.AppID, &n.MsgMethod, &n.UTCTimestamp, &n.ReceivedAt, &n.ProcessedAt,
		&n.Status, &n.Error, &n.DeliveryCount, &n.Channel, &n.Encrypted, &n.ContentForm, &n.Biz, &params)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(params, &n.Params); err != nil {
		return nil, fmt.Errorf("store: unable to decode params: %w", err)
	}
	n.BizContent = bizJSON(n.Biz)
	return &n, nil
}

// bizJSON returns biz as a JSON object when it is one, else as a JSON string.
func bizJSON(biz string) json.RawMessage {
	trimmed := strings.TrimSpace(biz)
	if strings.HasPrefix(trimmed, "{") && json.Valid([]byte(trimmed)) {
		return json.RawMessage(trimmed)
	}
	b, _ := json.Marshal(biz)
	return b
}

// Notification returns the notification notifyID (of appID, when given; of
// the most recently received app otherwise). It returns an ENOTFOUND
// *notify.Error when there is none.
func (db *DB) Notification(ctx context.Context, appID, notifyID string) (*view.StoredNotification, error) {
	n, err := scanNotification(db.Pool.QueryRow(ctx, `SELECT `+notificationColumns+` FROM notifications
        WHERE notify_id = $1 AND ($2 = '' OR app_id = $2) ORDER BY received_at DESC, id DESC LIMIT 1`, notifyID, appID))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "not_found", "no notification %q", notifyID))
	}
	return n, nil
}

// Notifications lists notifications newest first, a page at a time, and
// returns the cursor of the next page ("" after the last). It returns an
// EINVALID *notify.Error for a cursor it did not make.
func (db *DB) Notifications(ctx context.Context, f view.NotificationFilter) ([]*view.StoredNotification, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		At time.Time `json:"t"`
		ID int64     `json:"i"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	notApplied := "" // lets the planner use the partial index of the statuses ops look for
	if f.Status != "" && f.Status != notify.StatusApplied {
		notApplied = "AND status <> 'applied'"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+notificationColumns+` FROM notifications
        WHERE ($1 = '' OR msg_method = $1) AND ($2 = '' OR app_id = $2) AND ($3 = '' OR status = $3) `+notApplied+`
          AND ($4::timestamptz IS NULL OR received_at >= $4) AND ($5::timestamptz IS NULL OR received_at < $5)
          AND ($6::bigint = 0 OR (received_at, id) < ($7, $6))
        ORDER BY received_at DESC, id DESC LIMIT $8`,
		f.MsgMethod, f.AppID, string(f.Status), f.Since, f.Until, after.ID, after.At, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, scanNotification)
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.StoredNotification) any {
		after.At, after.ID = last.ReceivedAt, last.ID
		return after
	})
}

const authorizationColumns = `auth_app_id, app_id, user_id, status, authorized_at, cancelled_at,
    expires_at, refresh_expires_at, app_auth_token IS NOT NULL, updated_at, last_reconciled_at`

// authorizationDest are the scan destinations of authorizationColumns in
// a: a query that selects more columns appends its own after them.
func authorizationDest(a *view.Authorization) []any {
	return []any{&a.AuthAppID, &a.AppID, &a.UserID, &a.Status, &a.AuthorizedAt, &a.CancelledAt,
		&a.ExpiresAt, &a.RefreshExpiresAt, &a.HasToken, &a.UpdatedAt, &a.LastReconciledAt}
}

func scanAuthorization(row pgx.Row) (*view.Authorization, error) {
	var a view.Authorization
	err := row.Scan(authorizationDest(&a)...)
	return &a, err
}

// Authorization returns the authorization of authAppID (for appID when
// given; the most recently updated otherwise). It returns an ENOTFOUND
// *notify.Error when there is none.
func (db *DB) Authorization(ctx context.Context, appID, authAppID string) (*view.Authorization, error) {
	a, err := scanAuthorization(db.Pool.QueryRow(ctx, `SELECT `+authorizationColumns+` FROM authorizations
        WHERE auth_app_id = $1 AND ($2 = '' OR app_id = $2) ORDER BY updated_at DESC LIMIT 1`, authAppID, appID))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "not_found", "no authorization for %q", authAppID))
	}
	return a, nil
}

// Authorizations lists authorizations by auth_app_id, a page at a time.
func (db *DB) Authorizations(ctx context.Context, f view.AuthorizationFilter) ([]*view.Authorization, string, error) {
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
	rows, err := db.Pool.Query(ctx, `SELECT `+authorizationColumns+` FROM authorizations
        WHERE ($1 = '' OR status = $1) AND ($2 = '' OR app_id = $2)
          AND ($3 = '' OR (auth_app_id, app_id) > ($3, $4))
        ORDER BY auth_app_id, app_id LIMIT $5`, f.Status, f.AppID, after.AuthAppID, after.AppID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, scanAuthorization)
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.Authorization) any {
		after.AuthAppID, after.AppID = last.AuthAppID, last.AppID
		return after
	})
}

// MiniApp returns a mini-app's audit state with its versions, newest
// first: those of the app that owns it. It returns an ENOTFOUND
// *notify.Error when there is none.
func (db *DB) MiniApp(ctx context.Context, miniAppID string) (*view.MiniApp, error) {
	var m view.MiniApp
	err := db.Pool.QueryRow(ctx, `SELECT mini_app_id, app_id, audit_status, mini_app_version, updated_at, last_reconciled_at
        FROM mini_apps WHERE mini_app_id = $1`, miniAppID).
		Scan(&m.MiniAppID, &m.AppID, &m.AuditStatus, &m.MiniAppVersion, &m.UpdatedAt, &m.LastReconciledAt)
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "not_found", "no mini-app %q", miniAppID))
	}
	rows, err := db.Pool.Query(ctx, `SELECT mini_app_version, audit_status, bundle_id, base_audit, promote_audit,
            audit_reason, base_audit_reason, promote_audit_reason, event_at, updated_at
        FROM mini_app_versions WHERE mini_app_id = $1 AND app_id = $2 ORDER BY event_at DESC, event_notify_id DESC`, miniAppID, m.AppID)
	if err != nil {
		return nil, unavailable(err)
	}
	m.Versions = []view.AppVersion{}
	vs, err := collect(rows, func(row pgx.Row) (view.AppVersion, error) {
		var v view.AppVersion
		var at int64
		err := row.Scan(&v.MiniAppVersion, &v.AuditStatus, &v.BundleID, &v.BaseAudit, &v.PromoteAudit,
			&v.AuditReason, &v.BaseAuditReason, &v.PromoteAuditReason, &at, &v.UpdatedAt)
		v.AuditedAt = time.UnixMilli(at).UTC()
		v.BaseAuditReason, v.PromoteAuditReason = nullJSON(v.BaseAuditReason), nullJSON(v.PromoteAuditReason)
		return v, err
	})
	if err != nil {
		return nil, err
	}
	m.Versions = append(m.Versions, vs...)
	return &m, nil
}

// AuditHistory returns every audit notification of a mini-app, newest first
// (stale ones included, marked applied=false). It returns an ENOTFOUND
// *notify.Error when the mini-app is unknown.
func (db *DB) AuditHistory(ctx context.Context, miniAppID string) ([]view.AuditEntry, error) {
	rows, err := db.Pool.Query(ctx, `SELECT notify_id, msg_method, mini_app_version, audit_status, bundle_id,
            base_audit, promote_audit, audit_reason, base_audit_reason, promote_audit_reason, event_at, applied, received_at
        FROM mini_app_audit_events WHERE mini_app_id = $1 ORDER BY event_at DESC, notify_id DESC`, miniAppID)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := collect(rows, func(row pgx.Row) (view.AuditEntry, error) {
		var e view.AuditEntry
		var at int64
		err := row.Scan(&e.NotifyID, &e.MsgMethod, &e.MiniAppVersion, &e.AuditStatus, &e.BundleID,
			&e.BaseAudit, &e.PromoteAudit, &e.AuditReason, &e.BaseAuditReason, &e.PromoteAuditReason, &at, &e.Applied, &e.ReceivedAt)
		e.AuditedAt = time.UnixMilli(at).UTC()
		e.BaseAuditReason, e.PromoteAuditReason = nullJSON(e.BaseAuditReason), nullJSON(e.PromoteAuditReason)
		return e, err
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, notify.Errorf(notify.ENOTFOUND, "not_found", "no mini-app %q", miniAppID)
	}
	return out, nil
}

const orderColumns = `order_no, app_id, kind, out_order_no, mini_app_id, status, pid, merchant_id, app_name, updated_at`

func scanOrder(row pgx.Row) (*view.MiniAppOrder, error) {
	var o view.MiniAppOrder
	err := row.Scan(&o.OrderNo, &o.AppID, &o.Kind, &o.OutOrderNo, &o.MiniAppID, &o.Status, &o.PID, &o.MerchantID, &o.AppName, &o.UpdatedAt)
	return &o, err
}

// Order returns a mini-app creation order with its history (the owning
// app's notifications). It returns an ENOTFOUND *notify.Error when there is
// none.
func (db *DB) Order(ctx context.Context, orderNo string) (*view.MiniAppOrder, error) {
	o, err := scanOrder(db.Pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM mini_app_orders WHERE order_no = $1`, orderNo))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "not_found", "no mini-app order %q", orderNo))
	}
	rows, err := db.Pool.Query(ctx, `SELECT notify_id, msg_method, kind, status, mini_app_id, event_at, applied, received_at
        FROM mini_app_order_events WHERE order_no = $1 AND app_id = $2 ORDER BY event_at, notify_id`, orderNo, o.AppID)
	if err != nil {
		return nil, unavailable(err)
	}
	o.History, err = collect(rows, func(row pgx.Row) (view.OrderHistory, error) {
		var h view.OrderHistory
		var at int64
		err := row.Scan(&h.NotifyID, &h.MsgMethod, &h.Kind, &h.Status, &h.MiniAppID, &at, &h.Applied, &h.ReceivedAt)
		h.EventAt = time.UnixMilli(at).UTC()
		return h, err
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Orders lists mini-app creation orders by order_no, a page at a time.
func (db *DB) Orders(ctx context.Context, f view.OrderFilter) ([]*view.MiniAppOrder, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		OrderNo string `json:"o"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+orderColumns+` FROM mini_app_orders
        WHERE ($1 = '' OR out_order_no = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR status = $3)
          AND ($4 = '' OR order_no > $4)
        ORDER BY order_no LIMIT $5`, f.OutOrderNo, f.Kind, f.Status, after.OrderNo, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, scanOrder)
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.MiniAppOrder) any {
		after.OrderNo = last.OrderNo
		return after
	})
}

// pageOf cuts out, read with one row over limit, to a page of limit items,
// and returns it with the cursor of the next page: cursor's keyset
// position after the page's last item, or "" when out is the last page.
func pageOf[T any](out []T, limit int, cursor func(last T) any) ([]T, string, error) {
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(cursor(out[limit-1])), nil
}

// rowErr is the error of a query for one row that failed with err:
// notFound when there was no such row, the database's error (see
// unavailable) otherwise.
func rowErr(err, notFound error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound
	}
	return unavailable(err)
}

// collect scans every row with scan.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

func nullJSON(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("null")
	}
	return m
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return view.DefaultLimit
	case n > view.MaxLimit:
		return view.MaxLimit
	}
	return n
}

// encodeCursor and decodeCursor make a keyset position opaque.
func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return notify.Errorf(notify.EINVALID, "bad_cursor", "cursor is not one this API returned")
	}
	return nil
}

// OldestFailedAge returns how long the oldest failed notification has
// waited (0 when none has).
func (db *DB) OldestFailedAge(ctx context.Context) (time.Duration, error) {
	var oldest *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT min(received_at) FROM notifications WHERE status = 'failed'`).Scan(&oldest); err != nil {
		return 0, unavailable(err)
	}
	if oldest == nil {
		return 0, nil
	}
	return time.Since(*oldest), nil
}
