package view

import "time"

// The read models of the ops console (internal/console): what it shows
// beyond the ops API's views.

// IntakeBucket is what intake stored in one interval: the notifications
// first received in it, by the status they have now. Start is the
// interval's start; the newest bucket is the first.
type IntakeBucket struct {
	Start     time.Time
	Applied   int
	Stale     int
	Unhandled int
	Failed    int
}

// Total is every notification of the bucket.
func (b IntakeBucket) Total() int { return b.Applied + b.Stale + b.Unhandled + b.Failed }

// Merchant is a merchant app's authorization of one of our apps, with the
// token refresher's bookkeeping. Its tokens are never part of it.
type Merchant struct {
	Authorization
	RefreshedAt        *time.Time
	RefreshAttemptedAt *time.Time
	RefreshError       string
	EventNotifyID      string // the notification (or callback) that set its state
}

// Merchant problems a listing may keep to.
const (
	MerchantRefreshError = "refresh_error" // the last token refresh failed
	MerchantExpiring     = "expiring"      // authorized, its token expiring before Until
	MerchantCancelled    = "cancelled"     // cancelled at or after Since
)

// MerchantFilter selects authorizations, by auth_app_id then app_id.
type MerchantFilter struct {
	AuthAppID string // exactly this merchant app
	Prefix    string // auth_app_ids starting with it
	Status    string // authorized or cancelled
	Problem   string // one of the Merchant* problems, or ""
	// Since and Until bound Problem: cancelled at or after Since, expiring
	// before Until.
	Since, Until time.Time
	Limit        int
	Cursor       string
}

// MiniAppFilter selects mini-apps, by mini_app_id.
type MiniAppFilter struct {
	IDs         []string // these mini-apps only, when set
	Prefix      string   // mini_app_ids starting with it
	AuditStatus string
	Limit       int
	Cursor      string
}

// ConsoleSession is a signed-in console session as the store keeps it.
type ConsoleSession struct {
	TokenHash []byte // SHA-256 of the ops token it was signed in with
	CSRFToken string
	CreatedAt time.Time
	ExpiresAt time.Time
}
