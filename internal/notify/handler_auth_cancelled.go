package notify

import "context"

// authCancelled handles alipay.open.auth.appauth.cancelled: the merchant app
// auth_app_id withdrew its authorization of the ISV app, so any token held
// for it is dead. Ordered by utc_timestamp against grants.
func (h *handlers) authCancelled(ctx context.Context, s Store, n *Notification) (Status, error) {
	var biz struct {
		AuthAppID text `json:"auth_app_id"`
		UserID    text `json:"user_id"`
	}
	if err := decodeBiz(n, &biz); err != nil {
		return "", err
	}
	if biz.AuthAppID == "" {
		return "", Unusable("biz_content has no auth_app_id")
	}
	return applied(s.CancelAuthorization(ctx, AuthCancel{
		Event:     eventOf(n, 0),
		AuthAppID: string(biz.AuthAppID),
		UserID:    string(biz.UserID),
	}))
}
