package notify

import "encoding/json"

// Origin identifies the notification behind a state change, and orders it:
// state changes only when (At, NotifyID) is greater than that of the state
// it would replace, so ties are decided the same way on every replica.
type Origin struct {
	AppID    string
	NotifyID string
	At       int64 // milliseconds since the epoch
}

// AuthGrant is a merchant app's authorization of the ISV app.
type AuthGrant struct {
	Origin
	AuthAppID string
	UserID    string
	AuthTime  int64 // ms
	// The sealed (encrypted) tokens; see Sealer.
	SealedAuthToken    []byte
	SealedRefreshToken []byte
	ExpiresIn          int64 // seconds; 0 when unknown
	ReExpiresIn        int64 // seconds; 0 when unknown
}

// AuthCancel is a merchant app's withdrawal of its authorization.
type AuthCancel struct {
	Origin
	AuthAppID string
	UserID    string
}

// OrderChange is news about a mini-app creation order.
type OrderChange struct {
	Origin
	Method     string
	Kind       string // "merchant_confirmed" or "fast_register"
	OrderNo    string
	OutOrderNo string
	MiniAppID  string
	Status     string
	PID        string
	MerchantID string
	AppName    string
}

// Order kinds.
const (
	OrderKindMerchantConfirmed = "merchant_confirmed"
	OrderKindFastRegister      = "fast_register"
)

// AuditChange is the outcome of a mini-app version audit.
type AuditChange struct {
	Origin
	Method             string
	MiniAppID          string
	Version            string // empty when the notification names none
	AuditStatus        string // audit_passed, audit_rejected or base_audit_passed
	BundleID           string
	AuditReason        string
	BaseAudit          string
	PromoteAudit       string
	BaseAuditReason    json.RawMessage // null when absent
	PromoteAuditReason json.RawMessage // null when absent
	// VersionOnly leaves the mini-app's app-level state alone: a
	// reconciliation's repair of a version older than the newest Alipay
	// lists changes that version (and the history) only. A notification's
	// change never sets it.
	VersionOnly bool
}

// Audit statuses.
const (
	AuditPassed     = "audit_passed"
	AuditRejected   = "audit_rejected"
	BaseAuditPassed = "base_audit_passed"
)

// Change is what a handler decides a notification does to business state:
// one of AuthGrant, AuthCancel, OrderChange or AuditChange. The store applies
// it only when it is newer than the state it would replace, and says
// whether it did (StatusApplied) or not (StatusStale).
type Change interface {
	Ordering() Origin
	// Event is the event the change makes when it applies.
	Event() Event
}

// Ordering returns the event's identity and time, which order it against
// other changes to the same state.
func (e Origin) Ordering() Origin { return e }
