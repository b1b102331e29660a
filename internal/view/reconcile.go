package view

import (
	"encoding/json"
	"time"
)

// ReconcileRun is a reconciliation run (GET /v1/reconcile-runs): what
// started it, what it covers, and how far it got. While it runs, the
// counts are those so far.
type ReconcileRun struct {
	ID         int64      `json:"id"`
	Trigger    string     `json:"trigger"` // schedule, outage or manual
	Scope      string     `json:"scope"`   // all, auth_app_id or mini_app_id
	ScopeID    string     `json:"scope_id"`
	AppID      string     `json:"app_id"`
	Reason     string     `json:"reason"`
	Status     string     `json:"status"` // running or finished
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Targets    int        `json:"targets"` // merchants (and own mini-apps) to check
	Done       int        `json:"done"`    // of them, checked
	Checked    int        `json:"checked"` // entities compared: authorizations and versions
	Repaired   int        `json:"repaired"`
	Errors     int        `json:"errors"`
	// ErrorLog is the run's first errors, oldest first (GET of one run).
	ErrorLog []RunError `json:"error_log,omitempty"`
}

// RunError is one thing a run met that changed nothing.
type RunError struct {
	AppID     string    `json:"app_id"`
	AuthAppID string    `json:"auth_app_id"`
	MiniAppID string    `json:"mini_app_id"`
	Version   string    `json:"version"`
	Method    string    `json:"method"`
	Kind      string    `json:"kind"`
	Code      string    `json:"alipay_code"`
	SubCode   string    `json:"alipay_sub_code"`
	Message   string    `json:"message"`
	At        time.Time `json:"at"`
}

// Drift is one repair a run made: what differed from Alipay's answer.
type Drift struct {
	ID         int64           `json:"id"`
	RunID      int64           `json:"run_id"`
	AppID      string          `json:"app_id"`
	AuthAppID  string          `json:"auth_app_id"`
	MiniAppID  string          `json:"mini_app_id"`
	Kind       string          `json:"kind"` // authorization or mini_app_version
	Entity     string          `json:"entity"`
	Field      string          `json:"field"`
	Before     *string         `json:"before"` // null when the gateway had no such row
	After      string          `json:"after"`
	ObservedAt time.Time       `json:"observed_at"`
	Source     string          `json:"source"` // reconcile
	NotifyID   string          `json:"notify_id"`
	Observed   json.RawMessage `json:"observed"`
	CreatedAt  time.Time       `json:"created_at"`
}

// RunFilter selects runs, newest first.
type RunFilter struct {
	Limit  int
	Cursor string
}

// DriftFilter selects drift records, newest first.
type DriftFilter struct {
	RunID     int64 // 0: any run
	AuthAppID string
	MiniAppID string
	Kind      string
	Since     *time.Time // recorded at or after
	Limit     int
	Cursor    string
}

// ReconcileSummary is what reconciliation recorded since a time (the
// console's overview).
type ReconcileSummary struct {
	Since    time.Time
	Repaired int // drift records written since: each a repair, a lost notification
	Errors   int // errors recorded since: checks that changed nothing
}
