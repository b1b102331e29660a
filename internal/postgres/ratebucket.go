package postgres

import (
	"context"
	"math"
	"time"
)

// Token buckets shared by the replicas (migration 00008): each row is a
// bucket of fractional tokens refilled continuously at the caller's rate,
// capped at its burst, by the database's clock. A take refills, grants and
// subtracts in one upsert, so concurrent takers from any number of
// replicas are serialised by the row's lock and never grant more than
// burst + rate × elapsed between them.

// takeTokensSQL refills the bucket ($2 a second, capped at $3), grants
// min($4, whole tokens available) and subtracts them; a new bucket starts
// full. The refill uses clock_timestamp(): the time the row is locked, not
// the transaction's start.
const takeTokensSQL = `
INSERT INTO rate_buckets AS b (name, tokens, burst, granted, refilled_at)
VALUES ($1, $3 - LEAST($4, floor($3)), $3, LEAST($4, floor($3)), clock_timestamp())
ON CONFLICT (name) DO UPDATE SET
    granted = LEAST($4, floor(LEAST($3, b.tokens + $2 * GREATEST(0, extract(epoch FROM clock_timestamp() - b.refilled_at))))),
    tokens = LEAST($3, b.tokens + $2 * GREATEST(0, extract(epoch FROM clock_timestamp() - b.refilled_at)))
           - LEAST($4, floor(LEAST($3, b.tokens + $2 * GREATEST(0, extract(epoch FROM clock_timestamp() - b.refilled_at))))),
    burst = $3,
    refilled_at = clock_timestamp()
RETURNING granted, tokens`

// TakeTokens takes up to want tokens from the bucket named name (created
// full on first use), refilled at rate tokens a second up to burst (at
// least 1), and returns how many it granted, from 0 to want. When it
// granted fewer than want, wait is how long until the next whole token.
// A rate of 0 or less means no limit: it grants want and touches nothing.
// The rate and burst are the caller's: replicas configured differently
// share the tokens but each refills at its own rate.
//
// It returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) TakeTokens(ctx context.Context, name string, rate, burst float64, want int) (granted int, wait time.Duration, err error) {
	if want <= 0 {
		return 0, 0, nil
	}
	if rate <= 0 {
		return want, 0, nil
	}
	burst = math.Max(1, burst)
	var left float64
	if err := db.Pool.QueryRow(ctx, takeTokensSQL, name, rate, burst, want).Scan(&granted, &left); err != nil {
		return 0, 0, unavailable(err)
	}
	if granted < want {
		wait = time.Duration(math.Max(0, 1-left) / rate * float64(time.Second))
	}
	return granted, wait, nil
}

// ReturnTokens gives back n tokens taken and not used, up to the bucket's
// burst. It returns an EUNAVAILABLE *notify.Error when the database cannot
// be reached; a bucket never taken from is left alone.
func (db *DB) ReturnTokens(ctx context.Context, name string, n int) error {
	if n <= 0 {
		return nil
	}
	_, err := db.Pool.Exec(ctx, `UPDATE rate_buckets SET tokens = LEAST(burst, tokens + $2) WHERE name = $1`, name, n)
	return unavailable(err)
}
