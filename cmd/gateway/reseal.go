package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/seal"
)

// resealBatch is how many authorizations reseal reads at a time.
const resealBatch = 100

// resealStore is what resealTokens needs of the database; *postgres.DB.
type resealStore interface {
	SealedTokensAfter(ctx context.Context, afterAppID, afterAuthAppID string, limit int) ([]postgres.SealedTokens, error)
	ReplaceSealedTokens(ctx context.Context, t postgres.SealedTokens, authToken, refreshToken []byte) (bool, error)
}

// resealCounts is what a reseal found. Resealed, Current and Unreadable
// count sealed tokens (an authorization holds up to two); Changed counts
// authorizations.
type resealCounts struct {
	Resealed   int // sealed again under the current key (with --dry-run: would be)
	Current    int // already under the current key, in the key id form
	Unreadable int // opened by no configured key: left as they are
	Changed    int // written by a grant, refresh or cancellation between the read and the write: left to it
}

// reseal is `gateway reseal [--dry-run]`: it seals every stored token that
// is not under TOKEN_ENCRYPTION_KEY (an old key of
// TOKEN_ENCRYPTION_OLD_KEYS, or the legacy form without a key id) again
// under it, and prints what it found. It is safe while gateways serve and
// safe to run again.
func reseal(args []string, stdout io.Writer) error {
	c, dryRun, err := openDryRun("reseal", "count what would be resealed, write nothing", args)
	if c == nil {
		return err
	}
	defer c.close()
	ctx, cfg, db, log := c.ctx, c.cfg, c.db, c.log
	if cfg.Sealer == nil {
		return errors.New("reseal: TOKEN_ENCRYPTION_KEY is not set: there is no key to seal with")
	}
	n, err := resealTokens(ctx, db, cfg.Sealer, dryRun, resealBatch, log)
	verb := "resealed"
	if dryRun {
		verb = "to reseal (dry run: nothing written)"
	}
	fmt.Fprintf(stdout, "reseal: %d tokens %s, %d already current, %d unreadable with any key; %d authorizations changed meanwhile\n",
		n.Resealed, verb, n.Current, n.Unreadable, n.Changed)
	if n.Changed > 0 {
		fmt.Fprintln(stdout, "reseal: an authorization changed meanwhile keeps what was written to it; run reseal again for it")
	}
	return err
}

// resealTokens walks the authorizations holding tokens, batch at a time in
// key order, and seals each token that is not current again under the
// current key, writing an authorization only if its tokens are still the
// bytes it read. With dryRun it only counts. It logs each unreadable token
// by authorization (never the token), and returns the counts so far and
// the store's error, or ctx's.
func resealTokens(ctx context.Context, store resealStore, sealer *seal.Sealer, dryRun bool, batch int, log zerolog.Logger) (resealCounts, error) {
	var n resealCounts
	afterApp, afterAuth := "", ""
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		rows, err := store.SealedTokensAfter(ctx, afterApp, afterAuth, batch)
		if err != nil {
			return n, err
		}
		for _, t := range rows {
			owner := notify.TokenOwner(t.AppID, t.AuthAppID)
			var row resealCounts
			authToken, err := resealOne(sealer, t.AuthToken, owner, &row)
			if err != nil {
				return n, err
			}
			refreshToken, err := resealOne(sealer, t.RefreshToken, owner, &row)
			if err != nil {
				return n, err
			}
			if row.Unreadable > 0 {
				log.Warn().Str("app_id", t.AppID).Str("auth_app_id", t.AuthAppID).Int("tokens", row.Unreadable).
					Msg("reseal: a token opens with no configured key; left as it is")
			}
			if row.Resealed > 0 && !dryRun {
				ok, err := store.ReplaceSealedTokens(ctx, t, authToken, refreshToken)
				if err != nil {
					return n, err
				}
				if !ok {
					n.Changed++
					continue
				}
			}
			n.Resealed += row.Resealed
			n.Current += row.Current
			n.Unreadable += row.Unreadable
		}
		if len(rows) < batch {
			return n, nil
		}
		afterApp, afterAuth = rows[len(rows)-1].AppID, rows[len(rows)-1].AuthAppID
	}
}

// resealOne returns sealed as it should be stored, sealed again under the
// current key when it opens but is not current, and counts it in n. A
// token that is empty, current or unreadable comes back as it is. It
// returns Seal's error.
func resealOne(sealer *seal.Sealer, sealed []byte, owner string, n *resealCounts) ([]byte, error) {
	if len(sealed) == 0 {
		return sealed, nil
	}
	if sealer.IsCurrent(sealed, owner) {
		n.Current++
		return sealed, nil
	}
	plaintext, err := sealer.Open(sealed, owner)
	if err != nil {
		n.Unreadable++
		return sealed, nil
	}
	again, err := sealer.Seal(plaintext, owner)
	if err != nil {
		return nil, fmt.Errorf("reseal: %w", err)
	}
	n.Resealed++
	return again, nil
}
