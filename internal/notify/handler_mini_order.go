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
		OrderNo       text `json:"order_no"`
		OutOrderNo    text `json:"out_order_no"`
		MinAppID      text `json:"min_app_id"`
		MerchantAppID text `json:"merchant_app_id"`
		MiniAppID     text `json:"mini_app_id"`
		Status        text `json:"status"`
		PID           text `json:"pid"`
		MerchantID    text `json:"merchant_id"`
		AppName       text `json:"app_name"`
	}
	if err := decodeBiz(n, &biz); err != nil {
		return nil, err
	}
	if biz.OrderNo == "" {
		return nil, Unusable("biz_content has no order_no")
	}
	miniAppID := biz.MinAppID
	for _, alt := range []text{biz.MerchantAppID, biz.MiniAppID} {
		if miniAppID == "" {
			miniAppID = alt
		}
	}
	return OrderEvent{
		Event:      eventOf(n, 0),
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
