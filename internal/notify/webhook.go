package notify

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// StoredEvent is an event as the outbox holds it, and as the feed (GET
// /v1/events) and the webhooks send it.
type StoredEvent struct {
	// ID is the webhook-id: "evt_" and the event's number, the same in
	// every delivery and retry of it, to every endpoint.
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Timestamp  time.Time       `json:"timestamp"` // when the gateway recorded it
	AppID      string          `json:"app_id"`
	NotifyID   string          `json:"notify_id"`
	OccurredAt *time.Time      `json:"occurred_at"` // Alipay's time for it, when known
	Data       json.RawMessage `json:"data"`

	Seq int64 `json:"-"` // the event's number
}

// EventID returns the public id of event number seq.
func EventID(seq int64) string { return "evt_" + strconv.FormatInt(seq, 10) }

// Endpoint is one of the ISV's receivers of events.
type Endpoint struct {
	ID          int64  `json:"id"`
	URL         string `json:"url"`
	Description string `json:"description"`
	// EventTypes filters what it receives: empty for every type; an
	// entry ending in ".*" is a prefix ("mini_app.*"), "*" every type.
	EventTypes []string `json:"event_types"`
	// AppID, when set, keeps it to the events of that ISV app.
	AppID          string `json:"app_id"`
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabled_reason"`
	// Secret is given only when it is made (creation, rotation).
	Secret        string     `json:"secret,omitempty"`
	FailingSince  *time.Time `json:"failing_since"`
	PreviousUntil *time.Time `json:"previous_secret_expires_at"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`

	// Secrets sign its deliveries: the current secret and, during a
	// rotation, the previous one.
	Secrets []string `json:"-"`
}

// EndpointChange is what creating or updating an endpoint sets; a nil
// field is left as it is (or its default, on creation).
type EndpointChange struct {
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	EventTypes  *[]string `json:"event_types"`
	AppID       *string   `json:"app_id"`
	Enabled     *bool     `json:"enabled"`
}

// CheckEndpoint returns an EINVALID *Error when c would make an endpoint
// that cannot work: a URL that is not absolute http(s) with a host, or
// carries credentials or a fragment; an event type the gateway does not
// make (or a malformed prefix); an over-long description. Whether the
// host resolves is the caller's to check (it needs the network).
func CheckEndpoint(c EndpointChange, creating bool) error {
	if creating && c.URL == nil {
		return Errorf(EINVALID, "bad_endpoint", "url is required")
	}
	if c.URL != nil {
		u, err := url.Parse(*c.URL)
		switch {
		case err != nil:
			return Errorf(EINVALID, "bad_endpoint", "url does not parse: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			return Errorf(EINVALID, "bad_endpoint", "url must be http or https, not %q", Clip(u.Scheme))
		case u.Host == "" || u.Hostname() == "":
			return Errorf(EINVALID, "bad_endpoint", "url has no host")
		case u.User != nil:
			return Errorf(EINVALID, "bad_endpoint", "url must not carry credentials (the deliveries are signed instead)")
		case u.Fragment != "" || strings.Contains(*c.URL, "#"):
			return Errorf(EINVALID, "bad_endpoint", "url must not have a fragment")
		case len(*c.URL) > 2048:
			return Errorf(EINVALID, "bad_endpoint", "url is longer than 2048 bytes")
		}
	}
	if c.EventTypes != nil {
		if len(*c.EventTypes) > 50 {
			return Errorf(EINVALID, "bad_endpoint", "at most 50 event_types")
		}
		for _, t := range *c.EventTypes {
			if !knownFilter(t) {
				return Errorf(EINVALID, "bad_endpoint", "event type %q is none the gateway makes (%s, a prefix such as mini_app.*, or *)",
					Clip(t), strings.Join(EventTypes(), ", "))
			}
		}
	}
	if c.Description != nil && len(*c.Description) > 500 {
		return Errorf(EINVALID, "bad_endpoint", "description is longer than 500 bytes")
	}
	if c.AppID != nil && len(*c.AppID) > 64 {
		return Errorf(EINVALID, "bad_endpoint", "app_id is longer than 64 bytes")
	}
	return nil
}

// knownFilter reports whether f names event types the gateway makes: one
// of them, "*", or a prefix "x.*" of at least one.
func knownFilter(f string) bool {
	if f == "*" {
		return true
	}
	prefix, wildcard := strings.CutSuffix(f, "*")
	for _, t := range EventTypes() {
		if t == f || wildcard && strings.HasSuffix(prefix, ".") && strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}

// Matches reports whether an endpoint with filter types takes events of
// type typ.
func Matches(types []string, typ string) bool {
	if len(types) == 0 {
		return true
	}
	for _, f := range types {
		if f == "*" || f == typ {
			return true
		}
		if prefix, ok := strings.CutSuffix(f, "*"); ok && strings.HasPrefix(typ, prefix) {
			return true
		}
	}
	return false
}

// Delivery is one event to one endpoint, claimed for an attempt.
type Delivery struct {
	ID         int64
	EndpointID int64
	Attempt    int       // this attempt's number, from 1
	ExpiresAt  time.Time // dead letter when no attempt succeeds before
	Event      StoredEvent
}

// Attempt is the result of one delivery attempt.
type Attempt struct {
	DeliveryID int64
	EndpointID int64
	Attempt    int
	StartedAt  time.Time
	Duration   time.Duration
	StatusCode int    // 0 when no answer came
	Error      string // why it failed; empty on success
	Response   string // the answer's first bytes
	// OK: a 2xx answer within the timeout.
	OK bool
	// NextAt is when to try again; Dead that there is no next attempt.
	NextAt time.Time
	Dead   bool
}

// Retry schedule: exponential backoff from RetryBase, doubling to at most
// RetryCap, each wait jittered by ±RetryJitter of itself, for DeliveryWindow
// after the event; then the delivery is dead-lettered. About 20 attempts.
const (
	RetryBase      = 10 * time.Second
	RetryCap       = 6 * time.Hour
	RetryJitter    = 0.2
	DeliveryWindow = 72 * time.Hour
)

// Backoff returns the wait after attempt number attempt (from 1) failed,
// with jitter drawn from r (nil: the default source).
func Backoff(attempt int, r *rand.Rand) time.Duration {
	return ExpBackoff(RetryBase, RetryCap, RetryJitter, attempt, r)
}

// ExpBackoff returns the wait after attempt number attempt (from 1)
// failed: base doubling with each attempt up to ceiling, jittered by
// ±jitter of itself with r (nil: the default source). The webhooks'
// Backoff and the template batches' retries are both this.
func ExpBackoff(base, ceiling time.Duration, jitter float64, attempt int, r *rand.Rand) time.Duration {
	d := ceiling
	if attempt < 1 {
		attempt = 1
	}
	if attempt < 30 {
		if b := base << (attempt - 1); b > 0 && b < ceiling {
			d = b
		}
	}
	f := rand.Float64()
	if r != nil {
		f = r.Float64()
	}
	return time.Duration(float64(d) * (1 + jitter*(2*f-1)))
}

// Schedule fills in a's NextAt and Dead from its outcome: a failure is
// tried again after wait (Backoff), unless that is past the delivery's
// expiry.
func (a *Attempt) Schedule(expires, now time.Time, wait time.Duration) {
	if a.OK {
		return
	}
	a.NextAt = now.Add(wait)
	a.Dead = a.NextAt.After(expires)
}

// WebhookStats are the webhook dispatcher's gauges, as the store reads
// them.
type WebhookStats struct {
	// OldestPending is, by endpoint id, the age of its oldest pending
	// delivery (enabled endpoints only; absent when none is pending).
	OldestPending map[int64]time.Duration
	// Dead is, by endpoint id, how many deliveries are dead-lettered.
	Dead map[int64]int
	// Disabled is how many endpoints are disabled.
	Disabled int
	// FeedLag is how long the oldest event not yet visible to the feed
	// (above the horizon) has waited; 0 when every event is visible.
	FeedLag time.Duration
}
