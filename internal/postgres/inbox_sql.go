package postgres

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The statements of the intake (inbox.go): the look-up of what is stored,
// and the inbox insert, with the columns they are given.

// The inbox insert, and the events of the rows it inserts (the outbox).
// Each row's status is read back from the state its change wrote
// (outcomeFromState), so that the change statements and this insert go in
// one round trip and each row is written once. A row whose notify_id is
// stored already only raises its delivery count, unless it came by the
// same channel with other signed content: then it is left out of
// RETURNING, a conflict. Only a row inserted has events written, a state
// event (if_applied) only when the row's change applied; a
// notification.received has no data: its payload is the inbox row, read
// with it (see events.go).
const insertNotifications = `
WITH inbox AS (
INSERT INTO notifications (app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted,
    channel, content_form, content_digest, cert_sn, status, error, delivery_count, received_at, last_received_at,
    processed_at)
SELECT app_id, notify_id, msg_method, NULLIF(utc_timestamp, 0), biz_content, params::json, encrypted,
    channel, content_form, content_digest, cert_sn, ` + outcomeFromState + `, copies, received_at, received_at,
    received_at
FROM (SELECT *, ` + appliedFromState + ` AS applied
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::boolean[],
                  $8::text[], $9::text[], $10::bytea[], $11::text[], $12::text[], $13::text[], $14::int[],
                  $15::timestamptz[], $16::text[], $17::text[])
          AS batch(app_id, notify_id, msg_method, utc_timestamp, biz_content, params, encrypted, channel,
               content_form, content_digest, cert_sn, status, error, copies, received_at, change_kind, change_ref)
      OFFSET 0) AS batch
ON CONFLICT (app_id, notify_id) DO UPDATE
    SET delivery_count = notifications.delivery_count + EXCLUDED.delivery_count,
        last_received_at = EXCLUDED.last_received_at
    WHERE notifications.channel <> EXCLUDED.channel OR notifications.content_digest IS NULL OR EXCLUDED.content_digest IS NULL
       OR notifications.content_digest = EXCLUDED.content_digest
RETURNING id, xmax = 0 AS inserted, app_id, notify_id, status, error, delivery_count
), outbox AS (
INSERT INTO events (app_id, notify_id, type, occurred_at, data)
SELECT event.app_id, event.notify_id, event.type, event.occurred_at, event.data
FROM unnest($18::text[], $19::text[], $20::text[], $21::timestamptz[], $22::jsonb[], $23::boolean[])
    AS event(app_id, notify_id, type, occurred_at, data, if_applied)
JOIN inbox ON inbox.app_id = event.app_id AND inbox.notify_id = event.notify_id
WHERE inbox.inserted AND (NOT event.if_applied OR inbox.status = 'applied')
ON CONFLICT (app_id, notify_id, type) DO NOTHING
)
SELECT * FROM inbox`

// appliedFromState is, as one expression over the columns app_id,
// notify_id, change_kind and change_ref of a notification's row, whether
// its change applied: an authorization records the notification that set
// it; an order's or an audit's history entry records whether it applied,
// and is missing (NULL) only when the order or the mini-app belongs to
// another app. (OFFSET 0 around it, in the queries that use it, keeps
// Postgres from computing it once per use.)
const appliedFromState = `CASE batch.change_kind
    WHEN 'auth' THEN (SELECT auth.event_notify_id = batch.notify_id FROM authorizations auth
                      WHERE auth.app_id = batch.app_id AND auth.auth_app_id = batch.change_ref)
    WHEN 'order' THEN (SELECT history.applied FROM mini_app_order_events history WHERE history.app_id = batch.app_id AND history.notify_id = batch.notify_id)
    WHEN 'audit' THEN (SELECT history.applied FROM mini_app_audit_events history WHERE history.app_id = batch.app_id AND history.notify_id = batch.notify_id)
END`

// outcomeFromState is a notification's status and error, two select-list
// items over its row's status, error, change_kind, change_ref and applied
// (appliedFromState): without a change, the status and error the row
// carries; with one, applied or stale, or failed when the change's entity
// belongs to another app.
const outcomeFromState = `
    CASE WHEN batch.change_kind = '' THEN batch.status WHEN applied THEN 'applied' WHEN NOT applied THEN 'stale' ELSE 'failed' END,
    CASE WHEN batch.change_kind = '' OR applied IS NOT NULL THEN batch.error
         ELSE '` + foreignPrefix + `' || CASE batch.change_kind WHEN 'order' THEN 'order ' ELSE 'mini-app ' END || batch.change_ref ||
              ' belongs to app ' || COALESCE(CASE batch.change_kind
                  WHEN 'order' THEN (SELECT owner.app_id FROM mini_app_orders owner WHERE owner.order_no = batch.change_ref)
                  WHEN 'audit' THEN (SELECT owner.app_id FROM mini_apps owner WHERE owner.mini_app_id = batch.change_ref) END, '?') ||
              ': a notification of app ' || batch.app_id || ' changes nothing'
    END`

// outcomeQuery is outcomeFromState for one notification, for Reprocess.
const outcomeQuery = `
SELECT ` + outcomeFromState + `
FROM (SELECT *, ` + appliedFromState + ` AS applied
      FROM (VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text))
          AS batch(app_id, notify_id, status, error, change_kind, change_ref)
      OFFSET 0) AS batch`

// foreignPrefix starts the error of a notification failed because its
// entity belongs to another app (see outcomeFromState).
const foreignPrefix = "foreign: "

// storedNotifications answers which of the given notifications are stored:
// by key (app_id, notify_id), or by signed content under another key (then
// with that notification's notify_id, status and delivery count), or were
// stored and have been pruned since (their signed content's digest is in
// notifications_pruned). Here, and in insertNotifications, a look-up by key
// is a scalar subquery or a lateral probe: it is planned as an index probe
// per key even while the tables are empty, and a prepared statement's plan
// is kept (a semi-join planned on empty tables hashes a sequential scan of
// the inbox, and keeps doing so as it grows, until the next ANALYZE).
const storedNotifications = `
SELECT app_id, notify_id, stored, stored_as,
    CASE WHEN stored_as IS NOT NULL THEN (SELECT inbox.status FROM notifications inbox WHERE inbox.content_digest = batch.content_digest) END,
    CASE WHEN stored_as IS NOT NULL THEN (SELECT inbox.delivery_count FROM notifications inbox WHERE inbox.content_digest = batch.content_digest) END,
    pruned
FROM (SELECT app_id, notify_id, content_digest, stored, stored_as,
          NOT stored AND stored_as IS NULL AND content_digest IS NOT NULL AND
              COALESCE((SELECT true FROM notifications_pruned pruned WHERE pruned.content_digest = batch.content_digest), false) AS pruned
      FROM (SELECT app_id, notify_id, content_digest, stored,
                CASE WHEN NOT stored THEN (SELECT inbox.notify_id FROM notifications inbox WHERE inbox.content_digest = batch.content_digest) END AS stored_as
            FROM (SELECT app_id, notify_id, content_digest,
                      COALESCE((SELECT true FROM notifications inbox WHERE inbox.notify_id = batch.notify_id AND inbox.app_id = batch.app_id), false) AS stored
                  FROM unnest($1::text[], $2::text[], $3::bytea[]) AS batch(app_id, notify_id, content_digest) OFFSET 0) AS batch
            OFFSET 0) AS batch
      OFFSET 0) AS batch
WHERE stored OR stored_as IS NOT NULL OR pruned`

// insertStatement returns the statement that inserts the entries that
// are neither refused nor replays, or raises the delivery count of those
// already stored; nil when there is none. The status of an entry whose
// change is applied is read back from the state the change wrote; an entry
// without one carries its status.
func insertStatement(entries []*entry) (*statement, error) {
	cols := struct {
		app, id, method, biz, channel, form, sn, status, errText, kind, ref []string
		params                                                              []string
		digest                                                              [][]byte
		ts                                                                  []int64
		enc                                                                 []bool
		copies                                                              []int32
		received                                                            []time.Time
	}{}
	var events eventColumns
	for _, e := range entries {
		if e.err != nil || e.replays != nil || e.pruned {
			continue
		}
		n := e.Notification
		params, err := json.Marshal(n.Params)
		if err != nil {
			return nil, fmt.Errorf("store: unable to encode params: %w", err)
		}
		kind, ref := "", ""
		if e.apply {
			kind, ref = changeKind(e.Change)
		}
		cols.app = append(cols.app, n.AppID)
		cols.id = append(cols.id, n.NotifyID)
		cols.method = append(cols.method, n.Method)
		cols.ts = append(cols.ts, n.UTCTimestamp)
		cols.biz = append(cols.biz, n.BizContent)
		cols.params = append(cols.params, string(params))
		cols.enc = append(cols.enc, n.Encrypted)
		cols.channel = append(cols.channel, n.Channel)
		cols.form = append(cols.form, n.ContentForm)
		cols.digest = append(cols.digest, n.ContentDigest)
		cols.sn = append(cols.sn, n.CertSN)
		cols.status = append(cols.status, string(e.out.Status))
		cols.errText = append(cols.errText, e.out.Error)
		cols.copies = append(cols.copies, int32(e.copies))
		cols.received = append(cols.received, n.ReceivedAt.UTC())
		cols.kind = append(cols.kind, kind)
		cols.ref = append(cols.ref, ref)
		events.add(n, e.Events)
	}
	if len(cols.app) == 0 {
		return nil, nil
	}
	return &statement{insertNotifications, []any{cols.app, cols.id, cols.method, cols.ts, cols.biz, cols.params,
		cols.enc, cols.channel, cols.form, cols.digest, cols.sn, cols.status, cols.errText, cols.copies,
		cols.received, cols.kind, cols.ref, events.app, events.notifyID, events.typ, events.at, events.data,
		events.ifApplied}}, nil
}

// eventColumns are the events of a batch, as the columns of their insert.
type eventColumns struct {
	app, notifyID, typ []string
	at                 []*time.Time
	data               []*string // NULL for a notification.received
	ifApplied          []bool
}

func (c *eventColumns) add(n *notify.Notification, events []notify.Event) {
	for _, ev := range events {
		c.app, c.notifyID, c.typ = append(c.app, n.AppID), append(c.notifyID, n.NotifyID), append(c.typ, ev.Type)
		var at *time.Time
		if !ev.OccurredAt.IsZero() {
			at = &ev.OccurredAt
		}
		var data *string
		if ev.Data != nil {
			d := string(ev.Data)
			data = &d
		}
		c.at, c.data, c.ifApplied = append(c.at, at), append(c.data, data), append(c.ifApplied, ev.IfApplied)
	}
}

// readInserted reads the insert's answer: each entry's id, whether it is
// new, and its stored status, error and delivery count. An entry the
// insert was given but did not answer is a conflict: its notify_id is
// stored with other signed content from the same channel.
func readInserted(res pgx.Rows, entries []*entry) error {
	byKey := make(map[key]*entry, len(entries))
	for _, e := range entries {
		if e.err == nil && e.replays == nil && !e.pruned {
			byKey[keyOf(e.Notification)] = e
		}
	}
	var (
		id       int64
		inserted bool
		k        key
		out      notify.Outcome
	)
	answered := make(map[*entry]bool, len(byKey))
	_, err := pgx.ForEachRow(res, []any{&id, &inserted, &k.app, &k.id, &out.Status, &out.Error, &out.DeliveryCount}, func() error {
		if e := byKey[k]; e != nil {
			e.id, e.inserted, e.out = id, inserted, out
			e.out.Foreign = out.Status == notify.StatusFailed && strings.HasPrefix(out.Error, foreignPrefix)
			answered[e] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range byKey {
		if !answered[e] {
			e.err = conflictError(e.Notification)
		}
	}
	return nil
}
