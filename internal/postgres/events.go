package postgres

import (
	"context"
	"sort"
	"strconv"
	"time"

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
// most $6 ("item" rows), the position of the last one read ("last"), and
// how many were read ("count").
var eventsPage = `
WITH scanned AS (
    SELECT tx, id, type, app_id, notify_id, occurred_at, created_at, data FROM events
    WHERE (tx, id) > ($1::text::xid8, $2::bigint) AND ` + feedHorizon + `
    ORDER BY tx, id LIMIT $3
), matched AS (
    SELECT * FROM scanned WHERE ($4 = '' OR app_id = $4) AND ` + typeFilter("$5") + `
    ORDER BY tx, id LIMIT $6
)
SELECT 'item', tx::text, id, type, app_id, notify_id, occurred_at, created_at, data FROM matched
UNION ALL
(SELECT 'last', tx::text, id, '', '', '', NULL, now(), 'null'::jsonb FROM scanned ORDER BY tx DESC, id DESC LIMIT 1)
UNION ALL
SELECT 'count', '0', count(*), '', '', '', NULL, now(), 'null'::jsonb FROM scanned`

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

// forEachEvent reads rows of (kind, tx::text, id, type, app_id,
// notify_id, occurred_at, created_at, data), giving each event's feed
// position.
func forEachEvent(rows pgx.Rows, f func(kind string, p position, e notify.StoredEvent)) error {
	var (
		kind string
		tx   string
		e    notify.StoredEvent
		at   *time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&kind, &tx, &e.Seq, &e.Type, &e.AppID, &e.NotifyID, &at, &e.Timestamp, &e.Data}, func() error {
		p := position{ID: e.Seq}
		var err error
		if p.TX, err = strconv.ParseUint(tx, 10, 64); err != nil {
			return err
		}
		out := e
		out.ID, out.OccurredAt = notify.EventID(e.Seq), at
		out.Data = append([]byte(nil), e.Data...)
		f(kind, p, out)
		return nil
	})
	return err
}
