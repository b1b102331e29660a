package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Business-state changes are applied in multi-row statements, one per kind
// of change in a round (see statements). Each statement's ON CONFLICT ...
// WHERE clause applies a change only when (event_at, event_notify_id) is
// newer than the row's, so the ordering holds however many replicas write
// at once, and answers the (app_id, notify_id) of the changes that changed
// state; the others are stale. Each takes column arrays in the order of the
// rows they lock.
//
// Every state row has an owner, the ISV app (app_id) whose notification
// created it, and only that app's notifications change it: an upsert never
// sets app_id, its WHERE clause requires the row's app_id, and a change
// about a mini-app (or an order) another app owns writes no state and no
// history, so that its inbox row reads back as failed (see
// outcomeFromState). Authorizations are keyed by (app_id, auth_app_id): a
// merchant's authorization of each ISV app is a row of its own.

// In each statement, "change" is the batch's changes (an unnest of the
// column arrays), and the table's own name stands for the row it would
// replace (ON CONFLICT ... DO UPDATE), EXCLUDED for the row proposed.

const grantAuthorizations = `
INSERT INTO authorizations (app_id, auth_app_id, user_id, status, authorized_at,
    app_auth_token, app_refresh_token, expires_at, refresh_expires_at, event_at, event_notify_id)
SELECT app_id, auth_app_id, user_id, 'authorized', authorized_at,
    app_auth_token, app_refresh_token, expires_at, refresh_expires_at, event_at, event_notify_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $6::bytea[],
            $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::text[])
    AS change(app_id, auth_app_id, user_id, authorized_at, app_auth_token, app_refresh_token,
              expires_at, refresh_expires_at, event_at, event_notify_id)
ON CONFLICT (app_id, auth_app_id) DO UPDATE SET
    user_id = COALESCE(NULLIF(EXCLUDED.user_id, ''), authorizations.user_id),
    status = 'authorized',
    authorized_at = EXCLUDED.authorized_at,
    app_auth_token = EXCLUDED.app_auth_token,
    app_refresh_token = EXCLUDED.app_refresh_token,
    expires_at = EXCLUDED.expires_at,
    refresh_expires_at = EXCLUDED.refresh_expires_at,
    event_at = EXCLUDED.event_at,
    event_notify_id = EXCLUDED.event_notify_id,
    updated_at = now()
WHERE (authorizations.event_at, authorizations.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
RETURNING authorizations.app_id, authorizations.event_notify_id`

const cancelAuthorizations = `
INSERT INTO authorizations (app_id, auth_app_id, user_id, status, cancelled_at, event_at, event_notify_id)
SELECT app_id, auth_app_id, user_id, 'cancelled', cancelled_at, event_at, event_notify_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[])
    AS change(app_id, auth_app_id, user_id, cancelled_at, event_at, event_notify_id)
ON CONFLICT (app_id, auth_app_id) DO UPDATE SET
    user_id = COALESCE(NULLIF(EXCLUDED.user_id, ''), authorizations.user_id),
    status = 'cancelled',
    cancelled_at = EXCLUDED.cancelled_at,
    app_auth_token = NULL,
    app_refresh_token = NULL,
    expires_at = NULL,
    refresh_expires_at = NULL,
    event_at = EXCLUDED.event_at,
    event_notify_id = EXCLUDED.event_notify_id,
    updated_at = now()
WHERE (authorizations.event_at, authorizations.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
RETURNING authorizations.app_id, authorizations.event_notify_id`

const applyOrders = `
WITH change AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[])
        AS change(order_no, app_id, kind, out_order_no, mini_app_id, status, pid, merchant_id, app_name,
                  event_at, notify_id, msg_method)
), updated AS (
    INSERT INTO mini_app_orders (order_no, app_id, kind, out_order_no, mini_app_id, status,
        pid, merchant_id, app_name, event_at, event_notify_id)
    SELECT order_no, app_id, kind, out_order_no, mini_app_id, status, pid, merchant_id, app_name, event_at, notify_id
    FROM change
    ON CONFLICT (order_no) DO UPDATE SET
        kind = EXCLUDED.kind,
        out_order_no = COALESCE(NULLIF(EXCLUDED.out_order_no, ''), mini_app_orders.out_order_no),
        mini_app_id = COALESCE(NULLIF(EXCLUDED.mini_app_id, ''), mini_app_orders.mini_app_id),
        status = EXCLUDED.status,
        pid = COALESCE(NULLIF(EXCLUDED.pid, ''), mini_app_orders.pid),
        merchant_id = COALESCE(NULLIF(EXCLUDED.merchant_id, ''), mini_app_orders.merchant_id),
        app_name = COALESCE(NULLIF(EXCLUDED.app_name, ''), mini_app_orders.app_name),
        event_at = EXCLUDED.event_at,
        event_notify_id = EXCLUDED.event_notify_id,
        updated_at = now()
    WHERE mini_app_orders.app_id = EXCLUDED.app_id
      AND (mini_app_orders.event_at, mini_app_orders.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
    RETURNING mini_app_orders.app_id, mini_app_orders.event_notify_id
), history AS (
    INSERT INTO mini_app_order_events (order_no, app_id, notify_id, msg_method, kind, status,
        mini_app_id, event_at, applied)
    SELECT order_no, app_id, notify_id, msg_method, kind, status, mini_app_id, event_at,
        EXISTS (SELECT 1 FROM updated WHERE updated.app_id = change.app_id AND updated.event_notify_id = change.notify_id)
    FROM change
    -- no history for an order another app owns
    WHERE COALESCE((SELECT owner.app_id = change.app_id FROM mini_app_orders owner WHERE owner.order_no = change.order_no), true)
    ON CONFLICT (app_id, notify_id) DO NOTHING
)
SELECT app_id, event_notify_id FROM updated`

const applyAudits = `
WITH change AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[], $14::boolean[])
        AS change(mini_app_id, mini_app_version, app_id, audit_status, bundle_id, base_audit, promote_audit,
                  audit_reason, base_audit_reason, promote_audit_reason, event_at, notify_id, msg_method, version_only)
), mine AS (
    -- the changes about mini-apps that no other app owns
    SELECT * FROM change
    WHERE COALESCE((SELECT owner.app_id = change.app_id FROM mini_apps owner WHERE owner.mini_app_id = change.mini_app_id), true)
), version AS (
    INSERT INTO mini_app_versions (mini_app_id, mini_app_version, app_id, audit_status, bundle_id,
        base_audit, promote_audit, audit_reason, base_audit_reason, promote_audit_reason,
        event_at, event_notify_id)
    SELECT mini_app_id, mini_app_version, app_id, audit_status, bundle_id, base_audit, promote_audit, audit_reason,
        base_audit_reason::jsonb, promote_audit_reason::jsonb, event_at, notify_id
    FROM mine WHERE mini_app_version <> ''
    ON CONFLICT (mini_app_id, mini_app_version) DO UPDATE SET
        audit_status = EXCLUDED.audit_status,
        bundle_id = COALESCE(NULLIF(EXCLUDED.bundle_id, ''), mini_app_versions.bundle_id),
        base_audit = EXCLUDED.base_audit,
        promote_audit = EXCLUDED.promote_audit,
        audit_reason = EXCLUDED.audit_reason,
        base_audit_reason = EXCLUDED.base_audit_reason,
        promote_audit_reason = EXCLUDED.promote_audit_reason,
        event_at = EXCLUDED.event_at,
        event_notify_id = EXCLUDED.event_notify_id,
        updated_at = now()
    WHERE mini_app_versions.app_id = EXCLUDED.app_id
      AND (mini_app_versions.event_at, mini_app_versions.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
    RETURNING mini_app_versions.app_id, mini_app_versions.event_notify_id
), app AS (
    INSERT INTO mini_apps (mini_app_id, app_id, audit_status, mini_app_version, event_at, event_notify_id)
    SELECT mini_app_id, app_id, audit_status, mini_app_version, event_at, notify_id FROM mine WHERE NOT version_only
    ON CONFLICT (mini_app_id) DO UPDATE SET
        audit_status = EXCLUDED.audit_status,
        mini_app_version = EXCLUDED.mini_app_version,
        event_at = EXCLUDED.event_at,
        event_notify_id = EXCLUDED.event_notify_id,
        updated_at = now()
    WHERE mini_apps.app_id = EXCLUDED.app_id
      AND (mini_apps.event_at, mini_apps.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)
    RETURNING mini_apps.app_id, mini_apps.event_notify_id
), applied AS (
    SELECT app_id, event_notify_id FROM version UNION SELECT app_id, event_notify_id FROM app
), history AS (
    INSERT INTO mini_app_audit_events (mini_app_id, mini_app_version, app_id, notify_id, msg_method,
        audit_status, bundle_id, base_audit, promote_audit, audit_reason, base_audit_reason,
        promote_audit_reason, event_at, applied)
    SELECT mini_app_id, mini_app_version, app_id, notify_id, msg_method, audit_status, bundle_id, base_audit,
        promote_audit, audit_reason, base_audit_reason::jsonb, promote_audit_reason::jsonb, event_at,
        EXISTS (SELECT 1 FROM applied WHERE applied.app_id = mine.app_id AND applied.event_notify_id = mine.notify_id)
    FROM mine
    ON CONFLICT (app_id, notify_id) DO NOTHING
)
SELECT app_id, event_notify_id FROM applied`

// statement is one multi-row change statement and its arguments.
type statement struct {
	sql  string
	args []any
}

// statements returns the statements that apply the entries' changes, which
// must be sorted by state row and, for one row, newest first (see toApply),
// in their order:
//   - AuthGrant records a grant unless a newer grant or cancellation is
//     recorded;
//   - AuthCancel records a cancellation, wiping the tokens, unless a newer
//     grant is recorded; a cancellation of an authorization never seen is
//     recorded too, so that an older grant arriving later stays stale;
//   - OrderChange records an order's news in its history, and in its state
//     unless newer news is there; identifiers a newer notification leaves
//     empty keep their known value;
//   - AuditChange records an audit outcome in the app's history, and in the
//     version's and the app's state where it is newer (the version's only for a
//     reconciliation's VersionOnly repair).
//
// A multi-row INSERT ... ON CONFLICT DO UPDATE may not touch a row twice
// (SQLSTATE 21000), so changes go in rounds: round k holds the k-th newest
// change to each state row, and one statement per kind applies a round.
// Most batches touch each row once: one round, at most four statements.
func statements(entries []*entry) ([]statement, error) {
	var rounds [][]notify.Change
	k, last := 0, ""
	for i, e := range entries {
		if i > 0 && e.stateRow == last {
			k++
		} else {
			k, last = 0, e.stateRow
		}
		if k == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[k] = append(rounds[k], e.Change)
	}
	var out []statement
	for _, round := range rounds {
		var (
			grants  grantArgs
			cancels cancelArgs
			orders  orderArgs
			audits  auditArgs
		)
		for _, c := range round {
			switch c := c.(type) {
			case notify.AuthGrant:
				grants.add(c)
			case notify.AuthCancel:
				cancels.add(c)
			case notify.OrderChange:
				orders.add(c)
			case notify.AuditChange:
				audits.add(c)
			default:
				return nil, fmt.Errorf("store: unknown change %T", c)
			}
		}
		if len(grants.app) > 0 {
			out = append(out, statement{grantAuthorizations, grants.args()})
		}
		if len(cancels.app) > 0 {
			out = append(out, statement{cancelAuthorizations, cancels.args()})
		}
		if len(orders.app) > 0 {
			out = append(out, statement{applyOrders, orders.args()})
		}
		if len(audits.app) > 0 {
			out = append(out, statement{applyAudits, audits.args()})
		}
	}
	return out, nil
}

// querier is what applyChange runs on: a pool, a transaction, a savepoint.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// applyChange applies one change on q and reports whether it changed state.
func applyChange(ctx context.Context, q querier, c notify.Change) (bool, error) {
	stmts, err := statements([]*entry{{Decided: notify.Decided{Change: c}}}) // one entry: its state row does not matter
	if err != nil {
		return false, err
	}
	res, err := q.Query(ctx, stmts[0].sql, stmts[0].args...)
	if err != nil {
		return false, err
	}
	applied := res.Next() // the statement answers the changes that applied
	res.Close()
	return applied, res.Err()
}

// The column arrays of each statement, one element per change.

type grantArgs struct {
	app, auth, user, nid []string
	at, exp, rexp        []*time.Time
	tok, rtok            [][]byte
	ev                   []int64
}

func (g *grantArgs) add(c notify.AuthGrant) {
	at := msTime(c.At)
	g.app, g.auth, g.user = append(g.app, c.AppID), append(g.auth, c.AuthAppID), append(g.user, c.UserID)
	g.at, g.exp, g.rexp = append(g.at, at), append(g.exp, after(at, c.ExpiresIn)), append(g.rexp, after(at, c.ReExpiresIn))
	g.tok, g.rtok = append(g.tok, c.SealedAuthToken), append(g.rtok, c.SealedRefreshToken)
	g.ev, g.nid = append(g.ev, c.At), append(g.nid, c.NotifyID)
}

func (g *grantArgs) args() []any {
	return []any{g.app, g.auth, g.user, g.at, g.tok, g.rtok, g.exp, g.rexp, g.ev, g.nid}
}

type cancelArgs struct {
	app, auth, user, nid []string
	at                   []*time.Time
	ev                   []int64
}

func (g *cancelArgs) add(c notify.AuthCancel) {
	g.app, g.auth, g.user = append(g.app, c.AppID), append(g.auth, c.AuthAppID), append(g.user, c.UserID)
	g.at, g.ev, g.nid = append(g.at, msTime(c.At)), append(g.ev, c.At), append(g.nid, c.NotifyID)
}

func (g *cancelArgs) args() []any { return []any{g.app, g.auth, g.user, g.at, g.ev, g.nid} }

type orderArgs struct {
	orderNo, app, kind, outOrderNo, miniAppID, status, pid, merchantID, appName, nid, method []string
	ev                                                                                       []int64
}

func (o *orderArgs) add(c notify.OrderChange) {
	o.orderNo, o.app, o.kind = append(o.orderNo, c.OrderNo), append(o.app, c.AppID), append(o.kind, c.Kind)
	o.outOrderNo, o.miniAppID, o.status = append(o.outOrderNo, c.OutOrderNo), append(o.miniAppID, c.MiniAppID), append(o.status, c.Status)
	o.pid, o.merchantID, o.appName = append(o.pid, c.PID), append(o.merchantID, c.MerchantID), append(o.appName, c.AppName)
	o.ev, o.nid, o.method = append(o.ev, c.At), append(o.nid, c.NotifyID), append(o.method, c.Method)
}

func (o *orderArgs) args() []any {
	return []any{o.orderNo, o.app, o.kind, o.outOrderNo, o.miniAppID, o.status, o.pid, o.merchantID, o.appName, o.ev, o.nid, o.method}
}

type auditArgs struct {
	miniAppID, version, app, status, bundleID, base, promote, reason, nid, method []string
	baseReason, promoteReason                                                     []*string
	ev                                                                            []int64
	versionOnly                                                                   []bool
}

func (a *auditArgs) add(c notify.AuditChange) {
	a.miniAppID, a.version, a.app = append(a.miniAppID, c.MiniAppID), append(a.version, c.Version), append(a.app, c.AppID)
	a.status, a.bundleID = append(a.status, c.AuditStatus), append(a.bundleID, c.BundleID)
	a.base, a.promote, a.reason = append(a.base, c.BaseAudit), append(a.promote, c.PromoteAudit), append(a.reason, c.AuditReason)
	a.baseReason, a.promoteReason = append(a.baseReason, jsonOrNil(c.BaseAuditReason)), append(a.promoteReason, jsonOrNil(c.PromoteAuditReason))
	a.ev, a.nid, a.method = append(a.ev, c.At), append(a.nid, c.NotifyID), append(a.method, c.Method)
	a.versionOnly = append(a.versionOnly, c.VersionOnly)
}

func (a *auditArgs) args() []any {
	return []any{a.miniAppID, a.version, a.app, a.status, a.bundleID, a.base, a.promote, a.reason,
		a.baseReason, a.promoteReason, a.ev, a.nid, a.method, a.versionOnly}
}

// changeRow names the state row a change locks first, or for an audit the
// mini-app whose row it may update: changes are applied in this order, and
// for one row newest first, so that an older change in the same batch reads
// stale as it would arriving later.
func changeRow(c notify.Change) string {
	switch c := c.(type) {
	case notify.AuthGrant:
		return "a|" + c.AppID + "|" + c.AuthAppID
	case notify.AuthCancel:
		return "a|" + c.AppID + "|" + c.AuthAppID
	case notify.OrderChange:
		return "o|" + c.OrderNo
	case notify.AuditChange:
		return "m|" + c.MiniAppID
	}
	return ""
}

// changeKind names a change's kind and the entity it changes (the merchant
// app of an authorization, the order, the mini-app): what the inbox insert
// needs to read the change's outcome back (see appliedFromState).
func changeKind(c notify.Change) (kind, ref string) {
	switch c := c.(type) {
	case notify.AuthGrant:
		return "auth", c.AuthAppID
	case notify.AuthCancel:
		return "auth", c.AuthAppID
	case notify.OrderChange:
		return "order", c.OrderNo
	case notify.AuditChange:
		return "audit", c.MiniAppID
	}
	return "", ""
}

// newer reports whether a is newer than b, by event time then notify_id:
// changes to one row are applied newest first.
func newer(a, b notify.Change) bool {
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

// jsonOrNil returns raw JSON for a jsonb column, or nil (NULL) for JSON
// null or nothing.
func jsonOrNil(raw []byte) *string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	s := string(raw)
	return &s
}
