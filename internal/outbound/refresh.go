package outbound

import (
	"context"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// RefresherConfig tunes the token refresher. Zero fields take the defaults.
type RefresherConfig struct {
	// Interval is the time between passes; 10 minutes.
	Interval time.Duration
	// Window: an authorization is refreshed once its token or its refresh
	// token expires within Window; 7 days.
	Window time.Duration
	// RetryAfter is how long a failed (or abandoned) attempt waits before
	// the next; 30 minutes.
	RetryAfter time.Duration
	// MaxPerPass bounds the refreshes of one pass; 100.
	MaxPerPass int
	// ClockSkew is how far behind ours Alipay's clock may be; 5 minutes.
	// A refresh takes its place in the authorization's ordering with the
	// grants and cancellations at the time its call started less
	// ClockSkew (see Refreshed.EventAt). A grant dated before that (the
	// grant refreshed, delivered again, or an older one arriving late) is
	// then stale and cannot put back the tokens the refresh replaced,
	// while a cancellation made after the call started is dated after it,
	// on Alipay's clock, even if that clock lags ours by up to ClockSkew,
	// and still wins. The price is the mirror case: a grant Alipay dates
	// within ClockSkew before the call started also wins over the refresh.
	ClockSkew time.Duration
}

// Refresher renews the merchants' tokens before they expire
// (alipay.open.auth.token.app, grant_type=refresh_token). Several replicas
// may run one each: every authorization is claimed by one at a time.
type Refresher struct {
	s   *Service
	cfg RefresherConfig
}

// Refresher returns a refresher for s's apps.
func (s *Service) Refresher(cfg RefresherConfig) *Refresher {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Minute
	}
	if cfg.Window <= 0 {
		cfg.Window = 7 * 24 * time.Hour
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 30 * time.Minute
	}
	if cfg.MaxPerPass <= 0 {
		cfg.MaxPerPass = 100
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = 5 * time.Minute
	}
	return &Refresher{s: s, cfg: cfg}
}

// Run refreshes what is due every Interval until ctx is done.
func (r *Refresher) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if n, failed, err := r.RefreshDue(ctx); err != nil {
			r.s.log.Warn().Err(err).Msg("token refresh pass stopped")
		} else if n+failed > 0 {
			r.s.log.Info().Int("refreshed", n).Int("failed", failed).Msg("token refresh pass")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RefreshDue makes one pass: it claims and refreshes due authorizations
// until none is left or MaxPerPass is reached. It returns how many were
// refreshed and how many failed (each failure is recorded on its
// authorization and retried after RetryAfter), and the Store's error
// (EUNAVAILABLE) when claiming failed.
func (r *Refresher) RefreshDue(ctx context.Context) (refreshed, failed int, err error) {
	for i := 0; i < r.cfg.MaxPerPass && ctx.Err() == nil; i++ {
		due, err := r.s.store.ClaimRefresh(ctx, r.s.ids, r.s.now().Add(r.cfg.Window), r.cfg.RetryAfter)
		if err != nil {
			return refreshed, failed, err
		}
		if due == nil {
			break
		}
		if r.refresh(ctx, due) {
			refreshed++
		} else {
			failed++
		}
	}
	return refreshed, failed, nil
}

// refresh renews one claimed authorization's tokens and reports whether it
// did. A failure is recorded on the authorization and logged, its tokens
// left as they are: among them an answer whose token sets all name other
// merchant apps (another merchant's tokens are never stored as this one's).
func (r *Refresher) refresh(ctx context.Context, due *DueRefresh) bool {
	log := r.s.log.With().Str("app_id", due.AppID).Str("auth_app_id", due.AuthAppID).Logger()
	fail := func(err error) bool {
		log.Warn().Str("reason", notify.ErrorMessage(err)).Msg("token refresh failed")
		if err := r.s.store.FailRefresh(context.WithoutCancel(ctx), due, notify.ErrorMessage(err)); err != nil {
			log.Error().Err(err).Msg("token refresh failure not recorded")
		}
		return false
	}
	c, ok := r.s.clients[due.AppID]
	if !ok {
		return fail(notify.Errorf(notify.ENOTFOUND, "unknown_app", "app %s cannot call", due.AppID))
	}
	owner := notify.TokenOwner(due.AppID, due.AuthAppID)
	token, err := r.s.sealer.Open(due.SealedRefreshToken, owner)
	if err != nil || token == "" {
		return fail(notify.Errorf(notify.EINTERNAL, "token_unreadable", "the stored refresh token does not open with TOKEN_ENCRYPTION_KEY or TOKEN_ENCRYPTION_OLD_KEYS"))
	}
	var ans tokenAnswer
	biz := map[string]any{"grant_type": "refresh_token", "refresh_token": token}
	started := r.s.now()
	if _, err := r.s.call(ctx, c, MethodAuthTokenApp, biz, "", &ans); err != nil {
		return fail(err)
	}
	sets, err := ans.sets()
	if err != nil {
		return fail(err)
	}
	t, ok := setFor(sets, due.AuthAppID)
	if !ok {
		return fail(notify.Errorf(EUPSTREAM, "alipay_other_merchant",
			"Alipay's answer to the refresh of %s carries tokens for %s only: nothing stored", due.AuthAppID, authAppIDs(sets)))
	}
	// Alipay has renewed the tokens: keep them even if the caller left.
	ctx = context.WithoutCancel(ctx)
	sealed, err := r.s.sealer.Seal(t.AppAuthToken, owner)
	if err != nil {
		return fail(err)
	}
	sealedRefresh, err := r.s.sealer.Seal(t.AppRefreshToken, owner)
	if err != nil {
		return fail(err)
	}
	applied, err := r.s.store.CompleteRefresh(ctx, due, Refreshed{
		UserID: t.UserID, SealedAuthToken: sealed, SealedRefreshToken: sealedRefresh,
		At: r.s.now(), ExpiresIn: t.ExpiresIn.Int64(), ReExpiresIn: t.ReExpiresIn.Int64(),
		EventAt: started.Add(-r.cfg.ClockSkew).UnixMilli(),
	})
	if err != nil {
		log.Error().Err(err).Msg("refreshed tokens not stored")
		return false
	}
	if !applied {
		log.Info().Msg("authorization changed during the refresh (cancelled or granted anew): the refreshed tokens are dropped")
		return false
	}
	log.Info().Int64("expires_in", t.ExpiresIn.Int64()).Msg("tokens refreshed")
	return true
}

// setFor returns the token set of sets that names authAppID. A set named
// for another merchant app is never taken for this one's.
func setFor(sets []tokenSet, authAppID string) (tokenSet, bool) {
	for _, t := range sets {
		if t.AuthAppID == authAppID {
			return t, true
		}
	}
	return tokenSet{}, false
}

// authAppIDs lists the merchant apps that sets name.
func authAppIDs(sets []tokenSet) string {
	ids := make([]string, len(sets))
	for i, t := range sets {
		ids[i] = t.AuthAppID
	}
	return strings.Join(ids, ", ")
}
