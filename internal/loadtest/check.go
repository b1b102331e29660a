package loadtest

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Check is what the database holds for a run's notifications.
type Check struct {
	Acked   int `json:"acked"`   // notifications acknowledged at least once
	Stored  int `json:"stored"`  // of those, stored exactly once
	Missing int `json:"missing"` // acknowledged, not stored: lost
	Doubled int `json:"doubled"` // stored more than once (any notification of the run)
	// StoredUnacked are stored though never acknowledged: committed, but
	// the answer was lost (a kill, a timeout). Alipay's resend finds them.
	StoredUnacked  int            `json:"stored_unacked"`
	DeliveryCounts map[int]int    `json:"delivery_counts"` // delivery_count -> notifications
	Statuses       map[string]int `json:"statuses"`        // inbox status -> notifications
	// Effects: a stored audit or order notification (applied or stale)
	// has exactly one row in its history table.
	Effects        int `json:"effects"`
	EffectsMissing int `json:"effects_missing"`
	EffectsDoubled int `json:"effects_doubled"`
	// MissingIDs names up to 10 lost notifications.
	MissingIDs []string `json:"missing_ids,omitempty"`
}

// OK reports whether nothing acknowledged is lost and nothing is doubled.
func (c Check) OK() bool {
	return c.Missing == 0 && c.Doubled == 0 && c.EffectsMissing == 0 && c.EffectsDoubled == 0
}

// historyTable returns the history table a method's effect is recorded in,
// or "" for a method without one.
func historyTable(method string) string {
	switch method {
	case notify.MethodAuditPassed, notify.MethodAuditRejected, notify.MethodBaseAuditPassed:
		return "mini_app_audit_events"
	case notify.MethodMerchantConfirmed, notify.MethodFastRegisterChanged:
		return "mini_app_order_events"
	}
	return ""
}

// CheckDatabase counts, in the database at url, the rows of every
// notification in ids (with its method) for appID; acked says which were
// acknowledged.
func CheckDatabase(ctx context.Context, url, appID string, ids, methods []string, acked []bool) (Check, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return Check{}, fmt.Errorf("check: %w", err)
	}
	defer conn.Close(ctx)

	type row struct {
		rows, deliveries, effects int
		status                    string
	}
	found := make(map[string]*row, len(ids))
	rows, err := conn.Query(ctx, `
		SELECT notify_id, count(*), max(delivery_count), max(status) FROM notifications
		WHERE app_id = $1 AND notify_id = ANY($2) GROUP BY notify_id`, appID, ids)
	if err != nil {
		return Check{}, fmt.Errorf("check: %w", err)
	}
	for rows.Next() {
		var id string
		r := &row{}
		if err := rows.Scan(&id, &r.rows, &r.deliveries, &r.status); err != nil {
			return Check{}, fmt.Errorf("check: %w", err)
		}
		found[id] = r
	}
	if err := rows.Err(); err != nil {
		return Check{}, fmt.Errorf("check: %w", err)
	}
	rows, err = conn.Query(ctx, `
		SELECT notify_id, count(*) FROM (
			SELECT notify_id FROM mini_app_audit_events WHERE app_id = $1 AND notify_id = ANY($2)
			UNION ALL
			SELECT notify_id FROM mini_app_order_events WHERE app_id = $1 AND notify_id = ANY($2)) h
		GROUP BY notify_id`, appID, ids)
	if err != nil {
		return Check{}, fmt.Errorf("check: %w", err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return Check{}, fmt.Errorf("check: %w", err)
		}
		if r := found[id]; r != nil {
			r.effects = n
		}
	}
	if err := rows.Err(); err != nil {
		return Check{}, fmt.Errorf("check: %w", err)
	}

	c := Check{DeliveryCounts: map[int]int{}, Statuses: map[string]int{}}
	for i, id := range ids {
		r := found[id]
		if acked[i] {
			c.Acked++
			if r == nil {
				c.Missing++
				if len(c.MissingIDs) < 10 {
					c.MissingIDs = append(c.MissingIDs, id)
				}
				continue
			}
		}
		if r == nil {
			continue
		}
		if !acked[i] {
			c.StoredUnacked++
		}
		if r.rows > 1 {
			c.Doubled++
		} else if acked[i] {
			c.Stored++
		}
		c.DeliveryCounts[r.deliveries]++
		c.Statuses[r.status]++
		if historyTable(methods[i]) != "" && (r.status == string(notify.StatusApplied) || r.status == string(notify.StatusStale)) {
			switch {
			case r.effects == 0:
				c.EffectsMissing++
			case r.effects > 1:
				c.EffectsDoubled++
			default:
				c.Effects++
			}
		}
	}
	return c, nil
}

// String is the check for people.
func (c Check) String() string {
	verdict := "OK"
	if !c.OK() {
		verdict = "FAILED"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "check %s: %d acknowledged: %d stored exactly once, %d missing, %d doubled; %d stored but never acknowledged",
		verdict, c.Acked, c.Stored, c.Missing, c.Doubled, c.StoredUnacked)
	fmt.Fprintf(&b, "\ncheck: delivery_count %s; status %s", CountsString(c.DeliveryCounts), CountsString(c.Statuses))
	fmt.Fprintf(&b, "\ncheck: effects (history rows of audit/order notifications): %d one each, %d missing, %d doubled",
		c.Effects, c.EffectsMissing, c.EffectsDoubled)
	if len(c.MissingIDs) > 0 {
		fmt.Fprintf(&b, "\ncheck: missing: %s", strings.Join(c.MissingIDs, " "))
	}
	return b.String()
}
