package notify

// merchantConfirmed handles alipay.open.mini.merchant.confirmed: the
// merchant's answer to a mini-app the ISV asked to create for it.
func (h *handlers) merchantConfirmed(n *Notification) (Change, error) {
	return h.order(n, OrderKindMerchantConfirmed)
}

// fastRegisterChanged handles alipay.open.mini.merchant.fastregister.changed:
// the progress of a trial mini-app created for a merchant.
func (h *handlers) fastRegisterChanged(n *Notification) (Change, error) {
	return h.order(n, OrderKindFastRegister)
}

// order applies either kind of mini-app creation order notification, keyed
// by order_no. Status values are kept as Alipay sent them.
func (h *handlers) order(n *Notification, kind string) (Change, error) {
	var biz struct {
		OrderNo       Text `json:"order_no"`
		OutOrderNo    Text `json:"out_order_no"`
		MinAppID      Text `json:"min_app_id"`
		MerchantAppID Text `json:"merchant_app_id"`
		MiniAppID     Text `json:"mini_app_id"`
		Status        Text `json:"status"`
		PID           Text `json:"pid"`
		MerchantID    Text `json:"merchant_id"`
		AppName       Text `json:"app_name"`
	}
	if err := decodeBiz(n, &biz); err != nil {
		return nil, err
	}
	if biz.OrderNo == "" {
		return nil, Unusable("biz_content has no order_no")
	}
	miniAppID := biz.MinAppID
	for _, alt := range []Text{biz.MerchantAppID, biz.MiniAppID} {
		if miniAppID == "" {
			miniAppID = alt
		}
	}
	return OrderChange{
		Origin:     originOf(n, 0),
		Method:     n.Method,
		Kind:       kind,
		OrderNo:    string(biz.OrderNo),
		OutOrderNo: string(biz.OutOrderNo),
		MiniAppID:  string(miniAppID),
		Status:     string(biz.Status),
		PID:        string(biz.PID),
		MerchantID: string(biz.MerchantID),
		AppName:    string(biz.AppName),
	}, nil
}

// Event is mini_app_order.updated: the order as the notification left it.
func (o OrderChange) Event() Event {
	return stateEvent(EventMiniAppOrderUpdated, o.Origin, struct {
		OrderNo    string `json:"order_no"`
		Kind       string `json:"kind"`
		OutOrderNo string `json:"out_order_no"`
		MiniAppID  string `json:"mini_app_id"`
		Status     string `json:"status"`
		PID        string `json:"pid"`
		MerchantID string `json:"merchant_id"`
		AppName    string `json:"app_name"`
	}{o.OrderNo, o.Kind, o.OutOrderNo, o.MiniAppID, o.Status, o.PID, o.MerchantID, o.AppName})
}
