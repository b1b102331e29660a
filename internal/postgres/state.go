package postgres

import (
	"fmt"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Each business-state change is one statement answering one boolean row:
// whether it changed state. Its ON CONFLICT ... WHERE clause applies the
// change only when (event_at, event_notify_id) is newer than the row's, so
// the ordering holds however many replicas write at once.

const grantAuthorization = `
WITH up AS (
INSERT INTO authorizations AS a (app_id, auth_app_id, user_id, status, authorized_at,
    app_auth_token, app_refresh_token, expires_at, refresh_expires_at, event_at, event_notify_id)
VALUES ($1, $2, $3, 'authorized', $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (app_id, auth_app_id) DO UPDATE SET
    user_id = COALESCE(NULLIF(EXCLUDED.user_id, ''), a.user_id),
    status = 'authorized',
    authorized_at = EXCLUDED.authorized_at,
    app_auth_token = EXCLUDED.app_auth_token,
    app_refresh_token = EXCLUDED.app_refresh_token,
    expires_at = EXCLUDED.expires_at,
    refresh_expires_at = EXCLUDED.refresh_expires_at,
    event_at = EXCLUDED.event_at,
    event_notify_id = EXCLUDED.event_notify_id,
    updated_at = now()
WHERE (a.event_at, a.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
RETURNING 1)
SELECT EXISTS (SELECT 1 FROM up)`

const cancelAuthorization = `
WITH up AS (
INSERT INTO authorizations AS a (app_id, auth_app_id, user_id, status, cancelled_at, event_at, event_notify_id)
VALUES ($1, $2, $3, 'cancelled', $4, $5, $6)
ON CONFLICT (app_id, auth_app_id) DO UPDATE SET
    user_id = COALESCE(NULLIF(EXCLUDED.user_id, ''), a.user_id),
    status = 'cancelled',
    cancelled_at = EXCLUDED.cancelled_at,
    app_auth_token = NULL,
    app_refresh_token = NULL,
    expires_at = NULL,
    refresh_expires_at = NULL,
    event_at = EXCLUDED.event_at,
    event_notify_id = EXCLUDED.event_notify_id,
    updated_at = now()
WHERE (a.event_at, a.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
RETURNING 1)
SELECT EXISTS (SELECT 1 FROM up)`

const applyOrder = `
WITH up AS (
    INSERT INTO mini_app_orders AS o (order_no, app_id, kind, out_order_no, mini_app_id, status,
        pid, merchant_id, app_name, event_at, event_notify_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (order_no) DO UPDATE SET
        app_id = EXCLUDED.app_id,
        kind = EXCLUDED.kind,
        out_order_no = COALESCE(NULLIF(EXCLUDED.out_order_no, ''), o.out_order_no),
        mini_app_id = COALESCE(NULLIF(EXCLUDED.mini_app_id, ''), o.mini_app_id),
        status = EXCLUDED.status,
        pid = COALESCE(NULLIF(EXCLUDED.pid, ''), o.pid),
        merchant_id = COALESCE(NULLIF(EXCLUDED.merchant_id, ''), o.merchant_id),
        app_name = COALESCE(NULLIF(EXCLUDED.app_name, ''), o.app_name),
        event_at = EXCLUDED.event_at,
        event_notify_id = EXCLUDED.event_notify_id,
        updated_at = now()
    WHERE (o.event_at, o.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
    RETURNING 1
), history AS (
    INSERT INTO mini_app_order_events (order_no, app_id, notify_id, msg_method, kind, status,
        mini_app_id, event_at, applied)
    SELECT $1, $2, $11, $12, $3, $6, $5, $10, EXISTS (SELECT 1 FROM up)
    ON CONFLICT (app_id, notify_id) DO NOTHING
)
SELECT EXISTS (SELECT 1 FROM up)`

const applyAudit = `
WITH version AS (
    INSERT INTO mini_app_versions AS v (mini_app_id, mini_app_version, app_id, audit_status, bundle_id,
        base_audit, promote_audit, audit_reason, base_audit_reason, promote_audit_reason,
        event_at, event_notify_id)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
    WHERE $2 <> ''
    ON CONFLICT (mini_app_id, mini_app_version) DO UPDATE SET
        app_id = EXCLUDED.app_id,
        audit_status = EXCLUDED.audit_status,
        bundle_id = COALESCE(NULLIF(EXCLUDED.bundle_id, ''), v.bundle_id),
        base_audit = EXCLUDED.base_audit,
        promote_audit = EXCLUDED.promote_audit,
        audit_reason = EXCLUDED.audit_reason,
        base_audit_reason = EXCLUDED.base_audit_reason,
        promote_audit_reason = EXCLUDED.promote_audit_reason,
        event_at = EXCLUDED.event_at,
        event_notify_id = EXCLUDED.event_notify_id,
        updated_at = now()
    WHERE (v.event_at, v.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
    RETURNING 1
), app AS (
    INSERT INTO mini_apps AS m (mini_app_id, app_id, audit_status, mini_app_version, event_at, event_notify_id)
    VALUES ($1, $3, $4, $2, $11, $12)
    ON CONFLICT (mini_app_id) DO UPDATE SET
        app_id = EXCLUDED.app_id,
        audit_status = EXCLUDED.audit_status,
        mini_app_version = EXCLUDED.mini_app_version,
        event_at = EXCLUDED.event_at,
        event_notify_id = EXCLUDED.event_notify_id,
        updated_at = now()
    WHERE (m.event_at, m.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
    RETURNING 1
), history AS (
    INSERT INTO mini_app_audit_events (mini_app_id, mini_app_version, app_id, notify_id, msg_method,
        audit_status, bundle_id, base_audit, promote_audit, audit_reason, base_audit_reason,
        promote_audit_reason, event_at, applied)
    SELECT $1, $2, $3, $12, $13, $4, $5, $6, $7, $8, $9, $10, $11,
        EXISTS (SELECT 1 FROM version) OR EXISTS (SELECT 1 FROM app)
    ON CONFLICT (app_id, notify_id) DO NOTHING
)
SELECT EXISTS (SELECT 1 FROM version) OR EXISTS (SELECT 1 FROM app)`

// changeQuery returns the statement that applies c and its arguments:
//   - AuthGrant records a grant unless a newer grant or cancellation is
//     recorded;
//   - AuthCancel records a cancellation, wiping the tokens, unless a newer
//     grant is recorded; a cancellation of an authorization never seen is
//     recorded too, so that an older grant arriving later stays stale;
//   - OrderEvent records an order's news in its history, and in its state
//     unless newer news is there; identifiers a newer notification leaves
//     empty keep their known value;
//   - AuditEvent records an audit outcome in the app's history, and in the
//     version's and the app's state where it is newer.
func changeQuery(c notify.Change) (string, []any, error) {
	switch c := c.(type) {
	case notify.AuthGrant:
		at := msTime(c.At)
		return grantAuthorization, []any{c.AppID, c.AuthAppID, c.UserID, at, c.SealedAuthToken, c.SealedRefreshToken,
			after(at, c.ExpiresIn), after(at, c.ReExpiresIn), c.At, c.NotifyID}, nil
	case notify.AuthCancel:
		return cancelAuthorization, []any{c.AppID, c.AuthAppID, c.UserID, msTime(c.At), c.At, c.NotifyID}, nil
	case notify.OrderEvent:
		return applyOrder, []any{c.OrderNo, c.AppID, c.Kind, c.OutOrderNo, c.MiniAppID, c.Status,
			c.PID, c.MerchantID, c.AppName, c.At, c.NotifyID, c.Method}, nil
	case notify.AuditEvent:
		return applyAudit, []any{c.MiniAppID, c.Version, c.AppID, c.AuditStatus, c.BundleID,
			c.BaseAudit, c.PromoteAudit, c.AuditReason, jsonOrNil(c.BaseAuditReason), jsonOrNil(c.PromoteAuditReason),
			c.At, c.NotifyID, c.Method}, nil
	}
	return "", nil, fmt.Errorf("store: unknown change %T", c)
}

// changeRow names the state row a change locks first: changes are applied
// in this order (and, for one row, newest first, so that an older change in
// the same batch reads stale as it would arriving later).
func changeRow(c notify.Change) string {
	switch c := c.(type) {
	case notify.AuthGrant:
		return "a|" + c.AppID + "|" + c.AuthAppID
	case notify.AuthCancel:
		return "a|" + c.AppID + "|" + c.AuthAppID
	case notify.OrderEvent:
		return "o|" + c.OrderNo
	case notify.AuditEvent:
		return "m|" + c.MiniAppID + "|" + c.Version
	}
	return ""
}

// before orders two changes for applying: by row, then newest first.
func before(a, b notify.Change) bool {
	ra, rb := changeRow(a), changeRow(b)
	if ra != rb {
		return ra < rb
	}
	ea, eb := a.Ordering(), b.Ordering()
	return ea.At > eb.At || ea.At == eb.At && ea.NotifyID > eb.NotifyID
}

// msTime converts ms since the epoch to a time; 0 is NULL.
func msTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// after returns at plus seconds, or NULL when either is unknown.
func after(at *time.Time, seconds int64) *time.Time {
	if at == nil || seconds <= 0 {
		return nil
	}
	t := at.Add(time.Duration(seconds) * time.Second)
	return &t
}

// jsonOrNil returns raw JSON for a jsonb parameter, or nil (NULL) for JSON
// null or nothing.
func jsonOrNil(raw []byte) any {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return string(raw)
}
