package notify

import (
	"strings"
	"time"
)

// authGranted handles the older-style authorization notification
// (notify_type=open_app_auth_notify, status=execute_auth): the merchant app
// authorized the ISV app, and its tokens come with it. The tokens are sealed
// before they reach the store; with no Sealer the grant is refused, as
// tokens are never stored in clear and a grant is not kept without them.
// Ordered by detail.auth_time, which may not be ahead of the gateway's
// clock by more than the allowed skew.
func (h *handlers) authGranted(n *Notification) (Change, error) {
	if st := n.Params["status"]; st != "" && st != "execute_auth" {
		return nil, Unusable("authorization notification with status %q, want execute_auth", st)
	}
	var biz struct {
		Detail struct {
			AuthAppID   Text `json:"auth_app_id"`
			UserID      Text `json:"user_id"`
			AuthTime    Text `json:"auth_time"`
			ExpiresIn   Text `json:"expires_in"`
			ReExpiresIn Text `json:"re_expires_in"`
		} `json:"detail"`
		Error map[string]any `json:"error"`
	}
	if err := decodeBiz(n, &biz); err != nil {
		return nil, err
	}
	d := biz.Detail
	authAppID := string(d.AuthAppID)
	if authAppID == "" {
		authAppID = n.Params["auth_app_id"]
	}
	if authAppID == "" {
		return nil, Unusable("biz_content.detail has no auth_app_id")
	}
	if len(biz.Error) > 0 && n.Secrets["app_auth_token"] == "" {
		return nil, Unusable("authorization notification carries an error: %v", biz.Error)
	}
	if n.Secrets["app_auth_token"] == "" {
		return nil, Unusable("authorization notification has no app_auth_token (tokens are not kept after intake, so a reprocess cannot recover them)")
	}
	authTime := d.AuthTime.Int64()
	if ahead := time.UnixMilli(authTime).Sub(n.ReceivedAt); authTime != 0 && !n.ReceivedAt.IsZero() && ahead > h.skew {
		return nil, Errorf(ETOOEARLY, "future_timestamp", "auth_time %s is %s ahead of the gateway's clock (at most %s allowed)",
			time.UnixMilli(authTime).UTC().Format(time.RFC3339Nano), ahead.Round(time.Second), h.skew)
	}
	if h.sealer == nil {
		return nil, Errorf(EUNAVAILABLE, "token_key_missing", "TOKEN_ENCRYPTION_KEY is not configured: an authorization grant is not acknowledged until its tokens can be sealed (Alipay resends it)")
	}
	owner := TokenOwner(n.AppID, authAppID)
	token, err := h.sealer.Seal(n.Secrets["app_auth_token"], owner)
	if err != nil {
		return nil, err
	}
	refresh, err := h.sealer.Seal(n.Secrets["app_refresh_token"], owner)
	if err != nil {
		return nil, err
	}
	return AuthGrant{
		Origin:             originOf(n, authTime),
		AuthAppID:          authAppID,
		UserID:             string(d.UserID),
		AuthTime:           authTime,
		SealedAuthToken:    token,
		SealedRefreshToken: refresh,
		ExpiresIn:          d.ExpiresIn.Int64(),
		ReExpiresIn:        d.ReExpiresIn.Int64(),
	}, nil
}

// TokenOwner is the additional data that binds a sealed token to the
// authorization it belongs to.
func TokenOwner(appID, authAppID string) string {
	return strings.Join([]string{"app_auth_token", appID, authAppID}, "|")
}

// Event is authorization.granted: which merchant app authorized, and
// when its token expires; never the tokens.
func (g AuthGrant) Event() Event {
	at := millis(g.Origin.At)
	after := func(seconds int64) *time.Time {
		if seconds <= 0 || at.IsZero() {
			return nil
		}
		t := at.Add(time.Duration(seconds) * time.Second)
		return &t
	}
	return stateEvent(EventAuthorizationGranted, g.Origin, struct {
		AuthAppID        string     `json:"auth_app_id"`
		UserID           string     `json:"user_id"`
		Status           string     `json:"status"`
		AuthorizedAt     time.Time  `json:"authorized_at"`
		ExpiresAt        *time.Time `json:"expires_at"`
		RefreshExpiresAt *time.Time `json:"refresh_expires_at"`
	}{g.AuthAppID, g.UserID, "authorized", at, after(g.ExpiresIn), after(g.ReExpiresIn)})
}
