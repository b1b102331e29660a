package reconcile

import "github.com/alipay-notify-gateway/gateway/internal/notify"

// Alipay's version statuses (alipay.open.mini.version.list.query's
// version_status, .detail.query's status; docs/reconciliation.md).
const (
	StatusInit          = "INIT"
	StatusAuditing      = "AUDITING"
	StatusAuditReject   = "AUDIT_REJECT"
	StatusWaitRelease   = "WAIT_RELEASE"
	StatusBaseAuditPass = "BASE_AUDIT_PASS"
	StatusGray          = "GRAY"
	StatusRelease       = "RELEASE"
	StatusOffline       = "OFFLINE"
	StatusAuditOffline  = "AUDIT_OFFLINE"
)

// KnownStatuses are the version statuses the gateway knows, in the order
// the version list is asked for them (Alipay lists none without them).
var KnownStatuses = []string{StatusInit, StatusAuditing, StatusAuditReject, StatusWaitRelease, StatusBaseAuditPass,
	StatusGray, StatusRelease, StatusOffline, StatusAuditOffline}

// AuditState maps Alipay's status of a version onto the gateway's audit
// state (notify.AuditPassed, AuditRejected, BaseAuditPassed), the state
// the matching audit notification sets. It returns "" for a known status
// that is no audit outcome (INIT, AUDITING: not audited yet; AUDIT_OFFLINE:
// forced offline, which no notification the gateway keeps reports), and
// known false for a status it does not know: that changes nothing.
func AuditState(status string) (state string, known bool) {
	switch status {
	case StatusWaitRelease, StatusGray, StatusRelease, StatusOffline:
		return notify.AuditPassed, true
	case StatusAuditReject:
		return notify.AuditRejected, true
	case StatusBaseAuditPass:
		return notify.BaseAuditPassed, true
	case StatusInit, StatusAuditing, StatusAuditOffline:
		return "", true
	}
	return "", false
}
