package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// The feed reads events in commit order without ever skipping one. An
// event's id is taken when its row is inserted, before its transaction
// commits, so ids commit out of order: a reader paging by id could pass an
// id whose transaction is still in flight and never see it. Each event
// carries its transaction's id (tx, an xid8), and the feed reads in (tx,
// id) order only what lies below the horizon: the oldest transaction still
// in flight (pg_snapshot_xmin of the current snapshot). Every transaction
// below it has ended, and every one yet to write has a higher id, so a row
// below the horizon is final, and one not yet visible will appear after
// the cursor. The price: a transaction left open anywhere on the server
// holds the feed back until it ends (alipay_gateway_events_feed_lag_seconds).

// position is a place in the feed: after the event (tx, id).
type position struct {
	TX uint64 `json:"t"`
	ID int64  `json:"i"`
}

// feedHorizon is the predicate of the events a reader may see.
const feedHorizon = `tx < pg_snapshot_xmin(pg_current_snapshot())`

// typeFilter is notify.Matches in SQL, over a column type and a text[]
// parameter of filters.
func typeFilter(param string) string {
	return `(COALESCE(cardinality(` + param + `::text[]), 0) = 0 OR type = ANY(` + param + `)
          OR EXISTS (SELECT 1 FROM unnest(` + param + `::text[]) f WHERE f = '*' OR (right(f, 1) = '*' AND starts_with(type, left(f, -1)))))`
}

// eventsPage reads up to $3 events past the cursor ($1, $2) below the
// horizon, and answers those of them that match app $4 and types $5, at
// most $6 ("item" rows, with their payload: see eventRow), the position
// of the last one read ("last"), and how many were read ("count").
var eventsPage = `
WITH scanned AS (
    SELECT tx, id, type, app_id, notify_id, occurred_at, created_at, data FROM events
    WHERE (tx, id) > ($1::text::xid8, $2::bigint) AND ` + feedHorizon + `
    ORDER BY tx, id LIMIT $3
), matched AS (
    SELECT * FROM scanned WHERE ($4 = '' OR app_id = $4) AND ` + typeFilter("$5") + `
    ORDER BY tx, id LIMIT $6
)
SELECT 'item', e.tx::text, ` + eventSelect + ` FROM matched e ` + receivedJoin + `
UNION ALL
(SELECT 'last', tx::text, id, '', '', '', NULL, now(), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
 FROM scanned ORDER BY tx DESC, id DESC LIMIT 1)
UNION ALL
SELECT 'count', '0', count(*), '', '', '', NULL, now(), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM scanned`

// eventSelect are an event's columns (alias e) as eventRow reads them,
// with those of its notification (alias n, see receivedJoin) that make a
// notification.received's payload.
const eventSelect = `e.id, e.type, e.app_id, e.notify_id, e.occurred_at, e.created_at, e.data,
    n.msg_method, n.channel, n.encrypted, n.biz_content, n.params::text, n.status, n.error`

// receivedJoin joins to events e the inbox row of each notification.received
// (which has no data of its own), as n.
const receivedJoin = `LEFT JOIN notifications n ON e.data IS NULL AND n.app_id = e.app_id AND n.notify_id = e.notify_id`

// eventRow scans eventSelect.
type eventRow struct {
	e                                        notify.StoredEvent
	data                                     []byte
	method, channel, biz, params, status, er *string
	encrypted                                *bool
}

func (r *eventRow) dest() []any {
	return []any{&r.e.Seq, &r.e.Type, &r.e.AppID, &r.e.NotifyID, &r.e.OccurredAt, &r.e.Timestamp, &r.data,
		&r.method, &r.channel, &r.encrypted, &r.biz, &r.params, &r.status, &r.er}
}

// event returns the event scanned, its payload made from its notification
// when it is a notification.received.
func (r *eventRow) event() (notify.StoredEvent, error) {
	e := r.e
	e.ID = notify.EventID(e.Seq)
	switch {
	case r.data != nil:
		e.Data = append(json.RawMessage(nil), r.data...)
	case r.method != nil:
		rec := notify.Received{Method: *r.method, Channel: deref(r.channel), Encrypted: deref(r.encrypted), BizContent: deref(r.biz),
			Status: notify.Status(deref(r.status)), Error: deref(r.er)}
		if r.params != nil {
			if err := json.Unmarshal([]byte(*r.params), &rec.Params); err != nil {
				return e, fmt.Errorf("store: unable to decode the params of notification %s: %w", e.NotifyID, err)
			}
		}
		e.Data = notify.ReceivedData(rec)
	default: // its notification is gone
		e.Data = json.RawMessage(`{}`)
	}
	return e, nil
}

// feedScan is how many events one page reads at most, past the cursor,
// to find its matches.
const feedScan = 5000

// Events returns a page of the feed: the events after f.After in commit
// order that match f, below the horizon, at most f.Limit. The page's Next
// is set even when it is empty. It returns an EINVALID *notify.Error for a
// cursor it did not make, and an EUNAVAILABLE one when the database
// cannot be reached.
func (db *DB) Events(ctx context.Context, f view.EventFilter) (*view.EventPage, error) {
	var after position
	if f.After != "" {
		if err := decodeCursor(f.After, &after); err != nil {
			return nil, err
		}
	}
	limit := clampLimit(f.Limit)
	rows, err := db.Pool.Query(ctx, eventsPage, strconv.FormatUint(after.TX, 10), after.ID, feedScan, f.AppID, f.Types, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	type item struct {
		p position
		e notify.StoredEvent
	}
	var (
		items   []item
		last    *position
		scanned int64
	)
	err = forEachEvent(rows, func(kind string, p position, e notify.StoredEvent) {
		switch kind {
		case "item":
			items = append(items, item{p, e})
		case "last":
			last = &p
		case "count":
			scanned = p.ID
		}
	})
	if err != nil {
		return nil, unavailable(err)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].p.before(items[j].p) })
	page := &view.EventPage{Items: make([]notify.StoredEvent, len(items))}
	for i, it := range items {
		page.Items[i] = it.e
	}
	next := after
	switch {
	case len(items) == limit: // more may match before the last read
		next, page.More = items[limit-1].p, true
	case last != nil:
		next, page.More = *last, scanned == feedScan
	}
	page.Next = encodeCursor(next)
	return page, nil
}

func (p position) before(q position) bool { return p.TX < q.TX || p.TX == q.TX && p.ID < q.ID }

// forEachEvent reads rows of (kind, tx::text, eventSelect), giving each
// event's feed position.
func forEachEvent(rows pgx.Rows, f func(kind string, p position, e notify.StoredEvent)) error {
	var (
		kind string
		tx   string
		r    eventRow
	)
	_, err := pgx.ForEachRow(rows, append([]any{&kind, &tx}, r.dest()...), func() error {
		p := position{ID: r.e.Seq}
		var err error
		if p.TX, err = strconv.ParseUint(tx, 10, 64); err != nil {
			return err
		}
		e, err := r.event()
		if err != nil {
			return err
		}
		f(kind, p, e)
		return nil
	})
	return err
}
