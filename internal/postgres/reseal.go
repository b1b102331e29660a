package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Re-sealing: `gateway reseal` walks the authorizations in key order and
// seals their tokens again under the current TOKEN_ENCRYPTION_KEY. It runs
// beside serving gateways, so each write is conditional on the stored
// bytes being the ones it read: a grant, refresh or cancellation written
// meanwhile is never overwritten.

// SealedTokens is an authorization's sealed tokens as stored.
type SealedTokens struct {
	AppID        string
	AuthAppID    string
	AuthToken    []byte // app_auth_token; nil when none
	RefreshToken []byte // app_refresh_token; nil when none
}

// SealedTokensAfter returns up to limit authorizations that hold a sealed
// token, in (app_id, auth_app_id) order, after the authorization
// (afterAppID, afterAuthAppID); "", "" starts from the first. It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) SealedTokensAfter(ctx context.Context, afterAppID, afterAuthAppID string, limit int) ([]SealedTokens, error) {
	rows, err := db.Pool.Query(ctx, `SELECT app_id, auth_app_id, app_auth_token, app_refresh_token FROM authorizations
        WHERE (app_id, auth_app_id) > ($1, $2) AND (app_auth_token IS NOT NULL OR app_refresh_token IS NOT NULL)
        ORDER BY app_id, auth_app_id
        LIMIT $3`, afterAppID, afterAuthAppID, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SealedTokens, error) {
		var t SealedTokens
		err := row.Scan(&t.AppID, &t.AuthAppID, &t.AuthToken, &t.RefreshToken)
		return t, err
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// ReplaceSealedTokens stores authToken and refreshToken as the tokens of
// t's authorization if it still holds exactly t's sealed bytes, and
// reports whether it did: when a grant, a refresh or a cancellation has
// written the tokens since t was read, it changes nothing. The
// authorization's ordering and updated_at stay as they are (its tokens are
// the same, sealed anew). It returns an EUNAVAILABLE *notify.Error when the
// database cannot be reached.
func (db *DB) ReplaceSealedTokens(ctx context.Context, t SealedTokens, authToken, refreshToken []byte) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE authorizations SET app_auth_token = $3, app_refresh_token = $4
        WHERE app_id = $1 AND auth_app_id = $2
          AND app_auth_token IS NOT DISTINCT FROM $5 AND app_refresh_token IS NOT DISTINCT FROM $6`,
		t.AppID, t.AuthAppID, authToken, refreshToken, t.AuthToken, t.RefreshToken)
	if err != nil {
		return false, unavailable(err)
	}
	return tag.RowsAffected() == 1, nil
}
