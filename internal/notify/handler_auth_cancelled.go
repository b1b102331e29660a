package notify

// authCancelled handles alipay.open.auth.appauth.cancelled: the merchant app
// auth_app_id withdrew its authorization of the ISV app, so any token held
// for it is dead. Ordered by utc_timestamp against grants.
func (h *handlers) authCancelled(n *Notification) (Change, error) {
	var biz struct {
		AuthAppID Text `json:"auth_app_id"`
		UserID    Text `json:"user_id"`
	}
	if err := decodeBiz(n, &biz); err != nil {
		return nil, err
	}
	if biz.AuthAppID == "" {
		return nil, Unusable("biz_content has no auth_app_id")
	}
	return AuthCancel{
		Origin:    originOf(n, 0),
		AuthAppID: string(biz.AuthAppID),
		UserID:    string(biz.UserID),
	}, nil
}

// Event is authorization.cancelled: which merchant app withdrew.
func (c AuthCancel) Event() Event {
	return stateEvent(EventAuthorizationCancelled, c.Origin, struct {
		AuthAppID string `json:"auth_app_id"`
		UserID    string `json:"user_id"`
		Status    string `json:"status"`
	}{c.AuthAppID, c.UserID, "cancelled"})
}
