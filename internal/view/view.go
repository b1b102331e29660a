// Package view holds the read models of the ops API: what the store answers
// and the API returns as JSON (internal/httpapi/openapi.json), and the
// filters of its listings. They are views of the state, not the domain:
// nothing decides anything from them.
package view

import (
	"encoding/json"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Listing limits: the items of a page, when the query names none, and at
// most.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// StoredNotification is a notification as the inbox holds it.
type StoredNotification struct {
	NotifyID      string          `json:"notify_id"`
	AppID         string          `json:"app_id"`
	MsgMethod     string          `json:"msg_method"`
	UTCTimestamp  *int64          `json:"utc_timestamp"`
	ReceivedAt    time.Time       `json:"received_at"`
	ProcessedAt   time.Time       `json:"processed_at"`
	Status        notify.Status   `json:"status"`
	Error         string          `json:"error"`
	DeliveryCount int             `json:"delivery_count"`
	Channel       string          `json:"channel"`
	Encrypted     bool            `json:"encrypted"`
	ContentForm   string          `json:"content_form"`
	BizContent    json.RawMessage `json:"biz_content"` // a JSON object, or a JSON string when biz_content is not JSON

	ID     int64             `json:"-"`
	Params map[string]string `json:"-"`
	Biz    string            `json:"-"` // biz_content as stored
}

// Authorization is a merchant app's authorization of one of our apps. Its
// tokens are never part of it.
type Authorization struct {
	AuthAppID        string     `json:"auth_app_id"`
	AppID            string     `json:"app_id"`
	UserID           string     `json:"user_id"`
	Status           string     `json:"status"`
	AuthorizedAt     *time.Time `json:"authorized_at"`
	CancelledAt      *time.Time `json:"cancelled_at"`
	ExpiresAt        *time.Time `json:"expires_at"`
	RefreshExpiresAt *time.Time `json:"refresh_expires_at"`
	HasToken         bool       `json:"has_token"`
	UpdatedAt        time.Time  `json:"updated_at"`
	// LastReconciledAt is when a reconciliation run last checked it
	// against Alipay (null: never).
	LastReconciledAt *time.Time `json:"last_reconciled_at"`
}

// MiniApp is a mini-app's audit state with its versions, newest first.
type MiniApp struct {
	MiniAppID      string    `json:"mini_app_id"`
	AppID          string    `json:"app_id"`
	AuditStatus    string    `json:"audit_status"`
	MiniAppVersion string    `json:"mini_app_version"`
	UpdatedAt      time.Time `json:"updated_at"`
	// LastReconciledAt is when a reconciliation run last checked its
	// versions against Alipay (null: never).
	LastReconciledAt *time.Time   `json:"last_reconciled_at"`
	Versions         []AppVersion `json:"versions"`
}

// AuditOutcome is what an audit notification said of a version.
type AuditOutcome struct {
	MiniAppVersion     string          `json:"mini_app_version"`
	AuditStatus        string          `json:"audit_status"`
	BundleID           string          `json:"bundle_id"`
	BaseAudit          string          `json:"base_audit"`
	PromoteAudit       string          `json:"promote_audit"`
	AuditReason        string          `json:"audit_reason"`
	BaseAuditReason    json.RawMessage `json:"base_audit_reason"`
	PromoteAuditReason json.RawMessage `json:"promote_audit_reason"`
	AuditedAt          time.Time       `json:"audited_at"` // the notification's utc_timestamp
}

// AppVersion is one mini-app version's latest audit outcome.
type AppVersion struct {
	AuditOutcome
	UpdatedAt time.Time `json:"updated_at"`
}

// AuditEntry is one audit notification in a mini-app's history.
type AuditEntry struct {
	NotifyID  string `json:"notify_id"`
	MsgMethod string `json:"msg_method"`
	AuditOutcome
	Applied    bool      `json:"applied"` // false when it was stale
	ReceivedAt time.Time `json:"received_at"`
}

// MiniAppOrder is a mini-app creation order with its history, oldest first.
type MiniAppOrder struct {
	OrderNo    string         `json:"order_no"`
	AppID      string         `json:"app_id"`
	Kind       string         `json:"kind"`
	OutOrderNo string         `json:"out_order_no"`
	MiniAppID  string         `json:"mini_app_id"`
	Status     string         `json:"status"`
	PID        string         `json:"pid"`
	MerchantID string         `json:"merchant_id"`
	AppName    string         `json:"app_name"`
	UpdatedAt  time.Time      `json:"updated_at"`
	History    []OrderHistory `json:"history,omitempty"`
}

// OrderHistory is one notification about an order.
type OrderHistory struct {
	NotifyID   string    `json:"notify_id"`
	MsgMethod  string    `json:"msg_method"`
	Kind       string    `json:"kind"`
	Status     string    `json:"status"`
	MiniAppID  string    `json:"mini_app_id"`
	EventAt    time.Time `json:"event_at"`
	Applied    bool      `json:"applied"`
	ReceivedAt time.Time `json:"received_at"`
}

// NotificationFilter selects notifications for a listing.
type NotificationFilter struct {
	MsgMethod string
	AppID     string
	Status    notify.Status
	Since     *time.Time // received at or after
	Until     *time.Time // received before
	Limit     int
	Cursor    string // opaque; from a previous page's next cursor
}

// OrderFilter selects mini-app creation orders.
type OrderFilter struct {
	OutOrderNo string
	Kind       string
	Status     string
	Limit      int
	Cursor     string
}

// AuthorizationFilter selects authorizations.
type AuthorizationFilter struct {
	Status string
	AppID  string
	Limit  int
	Cursor string
}

// EventFilter selects events of the feed (GET /v1/events).
type EventFilter struct {
	After string   // opaque; a previous page's next cursor, "" for the oldest event kept
	Types []string // as an endpoint's filter (notify.Matches); empty for all
	AppID string
	Limit int
}

// EventPage is a page of the feed. Next is where the next read starts,
// always set (the same cursor when nothing new is visible yet); More says
// that events after it are visible already.
type EventPage struct {
	Items []notify.StoredEvent `json:"items"`
	Next  string               `json:"next_cursor"`
	More  bool                 `json:"has_more"`
}

// Delivery is one event's delivery to one endpoint.
type Delivery struct {
	ID             int64      `json:"id"`
	EndpointID     int64      `json:"endpoint_id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	Status         string     `json:"status"` // pending, delivered or dead
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"` // while pending
	LastStatusCode *int       `json:"last_status_code"`
	LastError      string     `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	AttemptLog     []Attempt  `json:"attempt_log,omitempty"` // for one delivery, oldest first
}

// Attempt is one attempt of a delivery.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int       `json:"duration_ms"`
	StatusCode *int      `json:"status_code"` // null when no answer came
	Error      string    `json:"error"`
	Response   string    `json:"response"` // the answer's first bytes
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// DeliveryFilter selects an endpoint's deliveries, newest first.
type DeliveryFilter struct {
	EndpointID int64
	Status     string
	Limit      int
	Cursor     string
}
