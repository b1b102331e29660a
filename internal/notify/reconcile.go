package notify

import (
	"encoding/json"
	"fmt"
	"time"
)

// Reconciliation's records (internal/reconcile asks Alipay what it knows
// and repairs the state; internal/postgres keeps the runs, their targets,
// the drift found and the errors met). See docs/reconciliation.md.

// MethodReconcile is the msg_method of a repair in a mini-app's audit
// history: the change a lost notification would have made, observed by a
// reconciliation run instead.
const MethodReconcile = "reconcile"

// What starts a run.
const (
	RunSchedule = "schedule" // every RECONCILE_INTERVAL
	RunOutage   = "outage"   // soon after an outage this gateway saw ended
	RunManual   = "manual"   // POST /v1/reconcile-runs
)

// What a run covers.
const (
	ScopeAll      = "all"         // every authorized merchant, and the ISV apps' own mini-apps
	ScopeMerchant = "auth_app_id" // one merchant app
	ScopeMiniApp  = "mini_app_id" // one mini-app
)

// Run statuses.
const (
	RunRunning  = "running"
	RunFinished = "finished"
)

// RunRequest asks for a reconciliation run.
type RunRequest struct {
	Trigger string
	Scope   string
	// ScopeID is the auth_app_id or mini_app_id of a scoped run.
	ScopeID string
	// AppID narrows a scoped run to one ISV app; any of AppIDs when empty.
	AppID string
	// AppIDs are the ISV apps that can call Alipay: a run covers their
	// merchants only.
	AppIDs []string
	// Reason says why (for an outage: what it was).
	Reason string
}

// ReconcileTarget is one merchant app's authorization of an ISV app (or
// the ISV app's own mini-app) in a run: what one replica at a time claims
// and checks.
type ReconcileTarget struct {
	RunID     int64
	AppID     string
	AuthAppID string // empty for the ISV app's own mini-app
	// MiniAppID is the mini-app whose versions are checked: the merchant
	// app itself when the gateway knows it as a mini-app, the ISV app for
	// its own; empty when there is none to check.
	MiniAppID string
	// Attempt counts the claims of the target, this one included.
	Attempt int
}

// ReconcileState is what the gateway holds of a target, compared with
// Alipay's answers.
type ReconcileState struct {
	// AuthStatus is the authorization's status; empty for the ISV app's
	// own mini-app, or when none is recorded.
	AuthStatus string
	// AuthSetBy is the ordering (At, NotifyID) of the grant, refresh or
	// cancellation that last set the authorization: what identifies the
	// stored token. Read before the token is, it tells a repair whether
	// the token Alipay judged is still the stored one (Repair.Expect).
	AuthSetBy Origin
	// MiniAppOwner is the ISV app that owns the mini-app's state (empty
	// when the gateway has no state of it yet).
	MiniAppOwner string
	// Versions are the stored versions' audit statuses.
	Versions map[string]string
}

// Drift kinds: what a repair is about.
const (
	DriftAuthorization  = "authorization"
	DriftMiniAppVersion = "mini_app_version"
)

// Repair is a change that Alipay's answer calls for: the change the lost
// notification would have made (an AuthCancel or an AuditChange, its
// Origin.NotifyID a RepairID, its Origin.At the time of the query less
// the clock skew allowed), and the drift record it leaves.
type Repair struct {
	Target ReconcileTarget
	Change Change
	Kind   string // DriftAuthorization or DriftMiniAppVersion
	// Entity names what drifted: the auth_app_id, or mini_app_id@version.
	Entity string
	Field  string // audit_status, or status
	After  string
	// Observed is what Alipay answered that the repair rests on.
	Observed json.RawMessage
	// Expect, for an AuthCancel, is the authorization's ordering when the
	// check read it (ReconcileState.AuthSetBy), before the token it asked
	// about was read: the cancellation applies only while the
	// authorization is unchanged, so that a grant or a refresh stored
	// during the query (a token Alipay did not judge) is never cancelled.
	Expect *Origin
}

// RepairID is the notify_id of a repair of entity in run: the same for
// any replica repeating it, so that the events and history of a repair are
// written once however often the run is resumed.
func RepairID(run int64, kind, entity string) string {
	return fmt.Sprintf("reconcile:%d:%s:%s", run, kind, entity)
}

// Reconcile error kinds: why a check changed nothing.
const (
	RecErrBusiness      = "business_error" // Alipay answered an error code
	RecErrInvalidToken  = "invalid_token"  // Alipay refused the merchant's token (20001)
	RecErrRateLimited   = "rate_limited"   // Alipay's 40005, after the retries
	RecErrUpstream      = "upstream_error" // the call failed, timed out, or its answer could not be trusted
	RecErrUnknownStatus = "unknown_status" // a status value the gateway does not know
	RecErrNoToken       = "no_token"       // the stored token is missing, expired or unreadable: not asked
	RecErrAbandoned     = "abandoned"      // the target was claimed too often without finishing
	RecErrForeign       = "foreign"        // the mini-app's state belongs to another ISV app
	RecErrTokenChanged  = "token_changed"  // the token Alipay judged invalid was replaced during the check
)

// ReconcileError is what a run met that changed nothing: recorded on the
// run.
type ReconcileError struct {
	RunID     int64
	AppID     string
	AuthAppID string
	MiniAppID string
	Version   string
	Method    string // the OpenAPI method, when a call failed
	Kind      string
	Code      string // Alipay's code and sub_code, when it answered one
	SubCode   string
	Message   string
	At        time.Time
}
