package notify

import "encoding/json"

// audit handles the three version audit notifications
// (alipay.open.mini.version.audit.passed, .audit.rejected,
// .baseaudit.passed). A notification with no mini_app_version (the seed's
// audit.passed sample) changes the app-level state only.
func (h *handlers) audit(n *Notification) (Change, error) {
	var biz struct {
		MiniAppID          Text            `json:"mini_app_id"`
		Version            Text            `json:"mini_app_version"`
		BundleID           Text            `json:"bundle_id"`
		AuditReason        Text            `json:"audit_reason"`
		BaseAudit          Text            `json:"base_audit"`
		PromoteAudit       Text            `json:"promote_audit"`
		BaseAuditReason    json.RawMessage `json:"base_audit_reason"`
		PromoteAuditReason json.RawMessage `json:"promote_audit_reason"`
	}
	if err := decodeBiz(n, &biz); err != nil {
		return nil, err
	}
	if biz.MiniAppID == "" {
		return nil, Unusable("biz_content has no mini_app_id")
	}
	return AuditChange{
		Origin:             originOf(n, 0),
		Method:             n.Method,
		MiniAppID:          string(biz.MiniAppID),
		Version:            string(biz.Version),
		AuditStatus:        auditStatus(n.Method),
		BundleID:           string(biz.BundleID),
		AuditReason:        string(biz.AuditReason),
		BaseAudit:          string(biz.BaseAudit),
		PromoteAudit:       string(biz.PromoteAudit),
		BaseAuditReason:    reasonObject(biz.BaseAuditReason),
		PromoteAuditReason: reasonObject(biz.PromoteAuditReason),
	}, nil
}

func auditStatus(method string) string {
	switch method {
	case MethodAuditRejected:
		return AuditRejected
	case MethodBaseAuditPassed:
		return BaseAuditPassed
	}
	return AuditPassed
}

// reasonObject keeps a reason object ({audit_images, memos}); Alipay may send
// it as a JSON string holding the object, which is unwrapped.
func reasonObject(m json.RawMessage) json.RawMessage {
	var s string
	if json.Unmarshal(m, &s) != nil {
		return rawObject(m) // an object, an array, or absent
	}
	if s == "" {
		return json.RawMessage("null")
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return m // a plain string: kept as a JSON string
}

// Event is mini_app.audit_passed, mini_app.audit_rejected or
// mini_app.base_audit_passed: the audit's outcome for the mini-app (and
// its version, when the notification names one).
func (a AuditChange) Event() Event {
	typ := EventMiniAppAuditPassed
	switch a.AuditStatus {
	case AuditRejected:
		typ = EventMiniAppAuditRejected
	case BaseAuditPassed:
		typ = EventMiniAppBaseAuditPassed
	}
	return stateEvent(typ, a.Origin, struct {
		MiniAppID          string          `json:"mini_app_id"`
		Version            string          `json:"version"`
		AuditStatus        string          `json:"audit_status"`
		BundleID           string          `json:"bundle_id"`
		AuditReason        string          `json:"audit_reason"`
		BaseAudit          string          `json:"base_audit"`
		PromoteAudit       string          `json:"promote_audit"`
		BaseAuditReason    json.RawMessage `json:"base_audit_reason"`
		PromoteAuditReason json.RawMessage `json:"promote_audit_reason"`
	}{a.MiniAppID, a.Version, a.AuditStatus, a.BundleID, a.AuditReason, a.BaseAudit, a.PromoteAudit,
		rawObject(a.BaseAuditReason), rawObject(a.PromoteAuditReason)})
}
