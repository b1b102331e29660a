package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The outbound side's storage: merchant tokens for calls made on a
// merchant's behalf, the record of template message sends (whose
// idempotency key, unique per app, is what makes a retried send go out
// once), grants from
// the authorization flow, and the token refresher's claims.

// AuthToken returns the sealed app_auth_token of authAppID's authorization
// of appID. It returns an ENOTFOUND *notify.Error when none is recorded, an
// ECONFLICT one when it is cancelled, holds no token or the token expired,
// and an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) AuthToken(ctx context.Context, appID, authAppID string) ([]byte, error) {
	var (
		status  string
		token   []byte
		expires *time.Time
	)
	err := db.Pool.QueryRow(ctx, `SELECT status, app_auth_token, expires_at FROM authorizations
        WHERE app_id = $1 AND auth_app_id = $2`, appID, authAppID).Scan(&status, &token, &expires)
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "unknown_authorization", "merchant app %s has not authorized app %s", authAppID, appID))
	}
	switch {
	case status != "authorized":
		return nil, notify.Errorf(notify.ECONFLICT, "authorization_cancelled", "merchant app %s cancelled its authorization of app %s: its token is not used", authAppID, appID)
	case len(token) == 0:
		return nil, notify.Errorf(notify.ECONFLICT, "no_token", "the authorization of app %s by merchant app %s holds no token", appID, authAppID)
	case expires != nil && expires.Before(db.now()):
		return nil, notify.Errorf(notify.ECONFLICT, "token_expired", "the token of merchant app %s expired at %s", authAppID, expires.UTC().Format(time.RFC3339))
	}
	return token, nil
}

const sendColumns = `id, app_id, auth_app_id, COALESCE(idempotency_key, ''), request, request_hash, status,
    code, msg, sub_code, sub_msg, error, COALESCE(latency_ms, 0), created_at, finished_at`

func scanSend(row pgx.Row) (*notify.TemplateSend, error) {
	var (
		s   notify.TemplateSend
		req []byte
	)
	err := row.Scan(&s.ID, &s.AppID, &s.AuthAppID, &s.IdempotencyKey, &req, &s.RequestHash, &s.Status,
		&s.Code, &s.Msg, &s.SubCode, &s.SubMsg, &s.Error, &s.LatencyMS, &s.CreatedAt, &s.FinishedAt)
	if err != nil {
		return nil, err
	}
	s.Request = req
	return &s, nil
}

// StartSend records s as pending and sets its ID and CreatedAt. When its
// idempotency key is already recorded for its app (by an earlier or a
// concurrent call: the unique index on (app_id, idempotency_key) decides),
// it records nothing and returns the send recorded under the key. It
// returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) StartSend(ctx context.Context, s *notify.TemplateSend) (*notify.TemplateSend, error) {
	err := db.Pool.QueryRow(ctx, `INSERT INTO template_messages (app_id, auth_app_id, idempotency_key, request, request_hash, status)
        VALUES ($1, $2, NULLIF($3, ''), $4, $5, 'pending')
        ON CONFLICT (app_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, created_at`,
		s.AppID, s.AuthAppID, s.IdempotencyKey, []byte(s.Request), s.RequestHash).Scan(&s.ID, &s.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return db.SendByKey(ctx, s.AppID, s.IdempotencyKey)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	s.Status = notify.SendPending
	return nil, nil
}

// SendByKey returns the send recorded under key for appID. It returns an
// ENOTFOUND *notify.Error when there is none, and an EUNAVAILABLE one when
// the database cannot be reached.
func (db *DB) SendByKey(ctx context.Context, appID, key string) (*notify.TemplateSend, error) {
	s, err := scanSend(db.Pool.QueryRow(ctx, `SELECT `+sendColumns+` FROM template_messages
        WHERE app_id = $1 AND idempotency_key = $2`, appID, key))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "not_found", "no template message of app %s with Idempotency-Key %q", appID, key))
	}
	return s, nil
}

// FinishSend records the outcome of a send that StartSend recorded, and
// sets its FinishedAt. It returns an EUNAVAILABLE *notify.Error when the
// database cannot be reached.
func (db *DB) FinishSend(ctx context.Context, s *notify.TemplateSend) error {
	var finished time.Time
	err := db.Pool.QueryRow(ctx, `UPDATE template_messages SET status = $2, code = $3, msg = $4, sub_code = $5,
        sub_msg = $6, error = $7, latency_ms = $8, finished_at = now() WHERE id = $1 RETURNING finished_at`,
		s.ID, s.Status, s.Code, s.Msg, s.SubCode, s.SubMsg, s.Error, s.LatencyMS).Scan(&finished)
	if err != nil {
		return unavailable(err)
	}
	s.FinishedAt = &finished
	return nil
}

// SaveGrant records a grant from the authorization flow with the very
// statement that records a notification's grant: it applies only when
// (At, NotifyID) is newer than the authorization's, so it is ordered with
// the grants and cancellations that notifications bring; when it applies,
// its authorization.granted event is written with it. It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) SaveGrant(ctx context.Context, g notify.AuthGrant) (bool, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return false, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	applied, err := applyChange(ctx, tx, g)
	if err != nil {
		return false, unavailable(err)
	}
	if applied {
		if err := writeEvents(ctx, tx, g.AppID, g.NotifyID, notify.StatusApplied, []notify.Event{g.Event()}); err != nil {
			return false, unavailable(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, unavailable(err)
	}
	return applied, nil
}

// ClaimRefresh picks the authorization of one of appIDs whose token or
// refresh token expires first before dueBefore, among those authorized,
// holding a refresh token, and not attempted within retryAfter; it marks
// it attempted now and returns it, or nil when none is due. The row is
// picked FOR UPDATE SKIP LOCKED: replicas claiming at once get different
// ones. It returns an EUNAVAILABLE *notify.Error when the database cannot
// be reached.
func (db *DB) ClaimRefresh(ctx context.Context, appIDs []string, dueBefore time.Time, retryAfter time.Duration) (*notify.DueRefresh, error) {
	var d notify.DueRefresh
	err := db.Pool.QueryRow(ctx, `UPDATE authorizations AS a SET refresh_attempted_at = now()
        FROM (SELECT app_id, auth_app_id FROM authorizations
              WHERE status = 'authorized' AND app_refresh_token IS NOT NULL AND app_id = ANY($1)
                AND LEAST(expires_at, refresh_expires_at) < $2
                AND (refresh_attempted_at IS NULL OR refresh_attempted_at < now() - make_interval(secs => $3))
              ORDER BY LEAST(expires_at, refresh_expires_at)
              LIMIT 1
              FOR UPDATE SKIP LOCKED) AS due
        WHERE a.app_id = due.app_id AND a.auth_app_id = due.auth_app_id
        RETURNING a.app_id, a.auth_app_id, a.user_id, a.app_refresh_token, a.event_at, a.event_notify_id`,
		appIDs, dueBefore, retryAfter.Seconds()).Scan(&d.AppID, &d.AuthAppID, &d.UserID, &d.SealedRefreshToken, &d.EventAt, &d.EventNotifyID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return &d, nil
}

// CompleteRefresh stores refreshed tokens in d's authorization and, in the
// same conditional UPDATE, moves its ordering past the grant refreshed:
// event_at becomes GREATEST(event_at + 1, r.EventAt) and event_notify_id
// "refresh:<r.At in ms>". The refresh has replaced the grant's tokens, so
// no grant older than the refresh may apply after it: not the grant
// refreshed, delivered again with a greater notify_id (it is 1 ms older),
// nor a grant dated before r.EventAt arriving late. What Alipay dates after
// r.EventAt (the call's start less the clock skew allowed, see
// outbound.RefresherConfig.ClockSkew) is newer and applies: a cancellation
// made after the call started, and also a grant dated within the skew
// before it. At the same millisecond the refresh wins: "refresh:" sorts
// after Alipay's numeric notify_ids and the flow's "oauth:" ids. When the
// authorization changed since d was claimed (a cancellation or a new grant)
// it changes nothing and reports false. It returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) CompleteRefresh(ctx context.Context, d *notify.DueRefresh, r notify.Refreshed) (bool, error) {
	at := r.At.UTC()
	tag, err := db.Pool.Exec(ctx, `UPDATE authorizations SET user_id = COALESCE(NULLIF($5, ''), user_id),
        app_auth_token = $6, app_refresh_token = $7, expires_at = $8, refresh_expires_at = $9,
        refreshed_at = $10, refresh_error = '', updated_at = now(),
        event_at = GREATEST(event_at + 1, $11), event_notify_id = $12
        WHERE app_id = $1 AND auth_app_id = $2 AND status = 'authorized' AND event_at = $3 AND event_notify_id = $4`,
		d.AppID, d.AuthAppID, d.EventAt, d.EventNotifyID, r.UserID, r.SealedAuthToken, r.SealedRefreshToken,
		after(&at, r.ExpiresIn), after(&at, r.ReExpiresIn), at, r.EventAt, fmt.Sprintf("refresh:%d", at.UnixMilli()))
	if err != nil {
		return false, unavailable(err)
	}
	return tag.RowsAffected() == 1, nil
}

// FailRefresh records why refreshing d failed, unless the authorization
// changed since. It returns an EUNAVAILABLE *notify.Error when the database
// cannot be reached.
func (db *DB) FailRefresh(ctx context.Context, d *notify.DueRefresh, reason string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE authorizations SET refresh_error = $5
        WHERE app_id = $1 AND auth_app_id = $2 AND event_at = $3 AND event_notify_id = $4`,
		d.AppID, d.AuthAppID, d.EventAt, d.EventNotifyID, reason)
	return unavailable(err)
}
