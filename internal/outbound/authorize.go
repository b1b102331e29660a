package outbound

import (
	"context"
	"fmt"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Grant is a merchant app's authorization of an ISV app, as the
// authorization flow stored it. It never holds a token.
type Grant struct {
	AppID       string `json:"app_id"`
	AuthAppID   string `json:"auth_app_id"`
	UserID      string `json:"user_id"`
	ExpiresIn   int64  `json:"expires_in"`
	ReExpiresIn int64  `json:"re_expires_in"`
	// Applied is false when a newer change of the authorization (a later
	// grant or cancellation) was already recorded: this one changed nothing.
	Applied bool `json:"applied"`
}

// tokenSet is one authorization's tokens in alipay.open.auth.token.app's
// answer.
type tokenSet struct {
	AppAuthToken    string      `json:"app_auth_token"`
	AppRefreshToken string      `json:"app_refresh_token"`
	AuthAppID       string      `json:"auth_app_id"`
	UserID          string      `json:"user_id"`
	ExpiresIn       notify.Text `json:"expires_in"`
	ReExpiresIn     notify.Text `json:"re_expires_in"`
}

// tokenAnswer is the answer of alipay.open.auth.token.app: the tokens at
// the top level (the older form, and refresh_token answers), or a list of
// them under "tokens" (the newer form of authorization_code answers).
type tokenAnswer struct {
	common
	tokenSet
	Tokens []tokenSet `json:"tokens"`
}

// sets returns every token set of the answer, once per auth_app_id. It
// returns an EUPSTREAM *notify.Error when there is none, or one lacks its
// token or auth_app_id.
func (a *tokenAnswer) sets() ([]tokenSet, error) {
	var out []tokenSet
	seen := map[string]bool{}
	for _, t := range append([]tokenSet{a.tokenSet}, a.Tokens...) {
		if (t.AppAuthToken != "" || t.AuthAppID != "") && !seen[t.AuthAppID] {
			seen[t.AuthAppID] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer carries no token")
	}
	for _, t := range out {
		if t.AppAuthToken == "" || t.AuthAppID == "" {
			return nil, notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer lacks app_auth_token or auth_app_id")
		}
	}
	return out, nil
}

// CompleteAuthorization exchanges the app_auth_code of the redirect after a
// merchant authorized appID (alipay.open.auth.token.app,
// grant_type=authorization_code) and stores the tokens sealed, ordered
// with the authorization notifications as of now. It returns the grants
// (one per merchant app the code covers) and: an EINVALID *notify.Error
// when code is empty, or appID is among several apps; ENOTFOUND for an
// app that cannot call; a *BusinessError when Alipay refused the code
// (used, expired, unknown); EUPSTREAM when the call failed; and the
// Store's EUNAVAILABLE.
func (s *Service) CompleteAuthorization(ctx context.Context, appID, code string) ([]Grant, error) {
	if code == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_code", "app_auth_code is missing")
	}
	c, err := s.client(appID)
	if err != nil {
		return nil, err
	}
	// A code is good once: finish the exchange and store what it gave even
	// if the browser goes away.
	ctx = context.WithoutCancel(ctx)
	var ans tokenAnswer
	biz := map[string]any{"grant_type": "authorization_code", "code": code}
	if _, err := s.call(ctx, c, MethodAuthTokenApp, biz, "", &ans); err != nil {
		return nil, err
	}
	sets, err := ans.sets()
	if err != nil {
		return nil, err
	}
	var out []Grant
	for _, t := range sets {
		g, err := s.saveGrant(ctx, c.app.ID, t)
		if err != nil {
			return nil, err
		}
		s.log.Info().Str("app_id", g.AppID).Str("auth_app_id", g.AuthAppID).Bool("applied", g.Applied).Msg("merchant authorization stored")
		out = append(out, g)
	}
	return out, nil
}

// saveGrant seals t's tokens and stores them as a grant at now.
func (s *Service) saveGrant(ctx context.Context, appID string, t tokenSet) (Grant, error) {
	owner := notify.TokenOwner(appID, t.AuthAppID)
	token, err := s.sealer.Seal(t.AppAuthToken, owner)
	if err != nil {
		return Grant{}, err
	}
	refresh, err := s.sealer.Seal(t.AppRefreshToken, owner)
	if err != nil {
		return Grant{}, err
	}
	ms := s.now().UnixMilli()
	g := Grant{AppID: appID, AuthAppID: t.AuthAppID, UserID: t.UserID, ExpiresIn: t.ExpiresIn.Int64(), ReExpiresIn: t.ReExpiresIn.Int64()}
	g.Applied, err = s.store.SaveGrant(ctx, notify.AuthGrant{
		Event:              notify.Event{AppID: appID, NotifyID: fmt.Sprintf("oauth:%s:%d", t.AuthAppID, ms), At: ms},
		AuthAppID:          t.AuthAppID,
		UserID:             t.UserID,
		AuthTime:           ms,
		SealedAuthToken:    token,
		SealedRefreshToken: refresh,
		ExpiresIn:          g.ExpiresIn,
		ReExpiresIn:        g.ReExpiresIn,
	})
	return g, err
}
