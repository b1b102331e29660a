package notify

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// The event types the gateway forwards (webhooks, GET /v1/events). Every
// stored notification makes one notification.received; a change that
// applies makes the event of its kind (Change.Event); a stale one makes
// none.
const (
	EventNotificationReceived   = "notification.received"
	EventAuthorizationGranted   = "authorization.granted"
	EventAuthorizationCancelled = "authorization.cancelled"
	EventMiniAppOrderUpdated    = "mini_app_order.updated"
	EventMiniAppAuditPassed     = "mini_app.audit_passed"
	EventMiniAppAuditRejected   = "mini_app.audit_rejected"
	EventMiniAppBaseAuditPassed = "mini_app.base_audit_passed"
	// EventTemplateBatchFinished (batch.go) is not a notification's: a
	// batch of template messages ended.
)

// EventTypes returns every event type, in the order the README documents
// them.
func EventTypes() []string {
	return []string{EventNotificationReceived, EventAuthorizationGranted, EventAuthorizationCancelled,
		EventMiniAppOrderUpdated, EventMiniAppAuditPassed, EventMiniAppAuditRejected, EventMiniAppBaseAuditPassed,
		EventTemplateBatchFinished}
}

// Event is one typed fact about a notification, which the store writes in
// the transaction that stores the notification (a transactional outbox):
// it exists if and only if that transaction committed. The store keeps one
// event of a type per notification, so a repeated delivery makes none.
type Event struct {
	Type string
	// Data is the payload: a JSON object; none for a
	// notification.received, whose payload the store reads from the stored
	// notification (ReceivedData).
	Data json.RawMessage
	// OccurredAt is Alipay's time for what happened; zero when unknown.
	OccurredAt time.Time
	// IfApplied writes the event only when the notification's change
	// applies: a state event, which a stale notification does not make.
	IfApplied bool
}

// receivedEvent is n's notification.received: every verified notification
// once, its method known to the gateway or not. It carries no Data: its
// payload is the stored notification itself, which the store reads with
// it (ReceivedData), so that intake writes the notification's content
// once.
func receivedEvent(n *Notification) Event {
	return Event{Type: EventNotificationReceived, OccurredAt: millis(n.UTCTimestamp)}
}

// Received is what a notification.received's payload is made of: the
// stored notification.
type Received struct {
	Method     string
	Channel    string
	Encrypted  bool
	BizContent string            // as stored: decrypted, secrets redacted
	Params     map[string]string // as stored
	Status     Status
	Error      string
}

// ReceivedData is the payload of a notification.received: the
// notification's parameters as received (biz_content decoded when it is
// JSON) but for the signature, and its status and error as they are
// stored now.
func ReceivedData(r Received) json.RawMessage {
	params := make(map[string]string, len(r.Params))
	for k, v := range r.Params {
		if k != "sign" && k != "biz_content" {
			params[k] = v
		}
	}
	biz := json.RawMessage(bytes.TrimSpace([]byte(r.BizContent)))
	if !json.Valid(biz) {
		biz, _ = json.Marshal(r.BizContent)
	}
	return mustJSON(struct {
		MsgMethod  string            `json:"msg_method"`
		Channel    string            `json:"channel"`
		Encrypted  bool              `json:"encrypted"`
		BizContent json.RawMessage   `json:"biz_content"`
		Params     map[string]string `json:"params"`
		Status     Status            `json:"status"`
		Error      string            `json:"error"`
	}{r.Method, r.Channel, r.Encrypted, biz, params, r.Status, r.Error})
}

// stateEvent is the event a change makes when it applies: of type typ,
// with data as its payload, at the change's time.
func stateEvent(typ string, o Origin, data any) Event {
	return Event{Type: typ, Data: mustJSON(data), OccurredAt: millis(o.At), IfApplied: true}
}

// mustJSON encodes v, a struct of strings, numbers and raw JSON, which
// cannot fail.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("notify: an event's payload does not encode: " + err.Error())
	}
	return withoutNUL(b)
}

// withoutNUL returns the JSON value v with each U+0000 in its strings
// replaced by U+FFFD: JSON allows the character, Postgres' jsonb (and many
// a receiver's store) does not, and an event must be writable whatever a
// notification carried.
func withoutNUL(v json.RawMessage) json.RawMessage {
	if !bytes.Contains(v, []byte(`\u0000`)) {
		return v
	}
	var x any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if d.Decode(&x) != nil {
		return v
	}
	b, err := json.Marshal(replaceNUL(x))
	if err != nil {
		return v
	}
	return b
}

func replaceNUL(x any) any {
	switch x := x.(type) {
	case string:
		return strings.ReplaceAll(x, "\x00", "\uFFFD")
	case []any:
		for i := range x {
			x[i] = replaceNUL(x[i])
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[strings.ReplaceAll(k, "\x00", "\uFFFD")] = replaceNUL(v)
		}
		return out
	}
	return x
}

// millis is ms since the epoch as a time; the zero time for 0.
func millis(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
