package postgres

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// The webhook endpoints, and the deliveries of events to them. The
// dispatcher (internal/webhook) gives each enabled endpoint the events of
// the feed past its cursor (FanOut), claims what is due (ClaimDeliveries)
// and records each attempt (RecordAttempts); replicas share the work, each
// row locked by one of them at a time (FOR UPDATE SKIP LOCKED).

const endpointColumns = `id, url, description, event_types, app_id, enabled, disabled_reason, failing_since,
    CASE WHEN previous_secret_until > now() THEN previous_secret_until END, created_at, updated_at,
    array_remove(ARRAY[secret, CASE WHEN previous_secret_until > now() THEN previous_secret END], NULL)`

func scanEndpoint(row pgx.Row) (*notify.Endpoint, error) {
	var e notify.Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.Description, &e.EventTypes, &e.AppID, &e.Enabled, &e.DisabledReason,
		&e.FailingSince, &e.PreviousUntil, &e.CreatedAt, &e.UpdatedAt, &e.Secrets)
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	return &e, err
}

func endpointNotFound(id int64) error {
	return notify.Errorf(notify.ENOTFOUND, "unknown_endpoint", "no webhook endpoint %d", id)
}

// CreateEndpoint stores a new endpoint with c's settings (checked by the
// caller) and secret. It takes the events committed from now on. It
// returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) CreateEndpoint(ctx context.Context, c notify.EndpointChange, secret string) (*notify.Endpoint, error) {
	types := []string{}
	if c.EventTypes != nil {
		types = *c.EventTypes
	}
	enabled := c.Enabled == nil || *c.Enabled
	e, err := scanEndpoint(db.Pool.QueryRow(ctx, `
        INSERT INTO webhook_endpoints (url, description, event_types, app_id, enabled, secret)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+endpointColumns,
		deref(c.URL), deref(c.Description), types, deref(c.AppID), enabled, secret))
	if err != nil {
		return nil, unavailable(err)
	}
	e.Secret = secret
	return e, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Endpoints returns every endpoint, oldest first; enabledOnly keeps the
// enabled ones. It returns an EUNAVAILABLE *notify.Error when the database
// cannot be reached.
func (db *DB) Endpoints(ctx context.Context, enabledOnly bool) ([]*notify.Endpoint, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE enabled OR NOT $1 ORDER BY id`, enabledOnly)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := collect(rows, scanEndpoint)
	if err != nil {
		return nil, err
	}
	if out == nil { // none: an empty list, not nil
		out = []*notify.Endpoint{}
	}
	return out, nil
}

// Endpoint returns endpoint id. It returns an ENOTFOUND *notify.Error when
// there is none, and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) Endpoint(ctx context.Context, id int64) (*notify.Endpoint, error) {
	e, err := scanEndpoint(db.Pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1`, id))
	if err != nil {
		return nil, rowErr(err, endpointNotFound(id))
	}
	return e, nil
}

// UpdateEndpoint changes what c sets of endpoint id. Enabling an endpoint
// clears why it was disabled and its failure streak; it then takes up the
// events where it left off. It returns an ENOTFOUND *notify.Error when
// there is none, and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) UpdateEndpoint(ctx context.Context, id int64, c notify.EndpointChange) (*notify.Endpoint, error) {
	e, err := scanEndpoint(db.Pool.QueryRow(ctx, `
        UPDATE webhook_endpoints SET url = COALESCE($2, url), description = COALESCE($3, description),
            event_types = COALESCE($4, event_types), app_id = COALESCE($5, app_id), enabled = COALESCE($6, enabled),
            disabled_reason = CASE WHEN $6 THEN '' WHEN NOT $6 AND enabled THEN 'disabled over the ops API' ELSE disabled_reason END,
            failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
            updated_at = now()
        WHERE id = $1 RETURNING `+endpointColumns,
		id, c.URL, c.Description, c.EventTypes, c.AppID, c.Enabled))
	if err != nil {
		return nil, rowErr(err, endpointNotFound(id))
	}
	return e, nil
}

// DeleteEndpoint deletes endpoint id and its deliveries. It returns an
// ENOTFOUND *notify.Error when there is none, and an EUNAVAILABLE one when
// the database cannot be reached.
func (db *DB) DeleteEndpoint(ctx context.Context, id int64) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	if err != nil {
		return unavailable(err)
	}
	if tag.RowsAffected() == 0 {
		return endpointNotFound(id)
	}
	// The row's lock, held to the commit, keeps a fan-out from adding to
	// what is deleted here.
	_, err = tx.Exec(ctx, `WITH gone AS (DELETE FROM webhook_deliveries WHERE endpoint_id = $1 RETURNING id)
        DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM gone)`, id)
	if err != nil {
		return unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// RotateSecret makes secret endpoint id's, and keeps signing with the one
// it replaces for overlap as well (two signatures), so that receivers can
// switch without failing a delivery. It returns an ENOTFOUND *notify.Error
// when there is none, and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) RotateSecret(ctx context.Context, id int64, secret string, overlap time.Duration) (*notify.Endpoint, error) {
	e, err := scanEndpoint(db.Pool.QueryRow(ctx, `
        UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = now() + $3 * interval '1 microsecond',
            secret = $2, updated_at = now()
        WHERE id = $1 RETURNING `+endpointColumns, id, secret, overlap.Microseconds()))
	if err != nil {
		return nil, rowErr(err, endpointNotFound(id))
	}
	e.Secret = secret
	return e, nil
}

// fanOut is FanOut's statement: $1 the endpoint, $2 how many events to
// read, $3 how many deliveries to claim, $4 the delivery window and $5
// the lease (in microseconds). It answers the claimed deliveries with
// their events ("claimed" rows), and how many events it read ("read").
var fanOut = `
WITH endpoint AS (
    SELECT id, cursor_tx, cursor_id, event_types, app_id FROM webhook_endpoints WHERE id = $1 AND enabled
    FOR UPDATE SKIP LOCKED
), scanned AS (
    SELECT e.tx, e.id, e.type, e.app_id FROM endpoint w CROSS JOIN LATERAL (
        SELECT tx, id, type, app_id FROM events
        WHERE (tx, id) > (w.cursor_tx, w.cursor_id) AND ` + feedHorizon + `
        ORDER BY tx, id LIMIT $2) e
), matched AS (
    SELECT s.id, row_number() OVER (ORDER BY s.tx, s.id) AS n FROM scanned s, endpoint w
    WHERE (w.app_id = '' OR s.app_id = w.app_id) AND ` + typeFilter("w.event_types") + `
), queued AS (
    INSERT INTO webhook_deliveries (endpoint_id, event_id, expires_at, attempts, next_attempt_at)
    SELECT $1, id, now() + $4 * interval '1 microsecond', CASE WHEN n <= $3 THEN 1 ELSE 0 END,
        CASE WHEN n <= $3 THEN now() + $5 * interval '1 microsecond' ELSE now() END
    FROM matched ORDER BY n
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING id, attempts, expires_at, event_id
), moved AS (
    UPDATE webhook_endpoints w SET cursor_tx = last.tx, cursor_id = last.id
    FROM (SELECT tx, id FROM scanned ORDER BY tx DESC, id DESC LIMIT 1) last
    WHERE w.id = $1
)
SELECT 'claimed', q.id, q.attempts, q.expires_at, ` + eventSelect + `
FROM queued q JOIN events e ON e.id = q.event_id ` + receivedJoin + `
WHERE q.attempts = 1
UNION ALL
SELECT 'read', count(*), 0, now(), 0, '', '', '', NULL, now(), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM scanned`

// FanOut gives endpoint id a delivery of each event past its cursor that
// it takes (its app and type filters), at most limit events read, and
// moves its cursor past them, in one statement holding the endpoint's
// row: a replica doing the same at once skips it. The first claim of the
// deliveries are claimed at once, as ClaimDeliveries does with lease, and
// returned with their events, oldest first; the others are due now. Each
// delivery expires (is dead-lettered if not delivered) window from now.
// It returns nothing when the endpoint is disabled, gone or locked, and an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) FanOut(ctx context.Context, id int64, limit, claim int, window, lease time.Duration) (claimed []notify.Delivery, read int, err error) {
	rows, err := db.Pool.Query(ctx, fanOut, id, limit, claim, window.Microseconds(), lease.Microseconds())
	if err != nil {
		return nil, 0, unavailable(err)
	}
	var (
		kind string
		d    notify.Delivery
		r    eventRow
		n    int64
	)
	_, err = pgx.ForEachRow(rows, append([]any{&kind, &n, &d.Attempt, &d.ExpiresAt}, r.dest()...), func() error {
		if kind == "read" {
			read = int(n)
			return nil
		}
		e, err := r.event()
		if err != nil {
			return err
		}
		d.ID, d.EndpointID, d.Event = n, id, e
		claimed = append(claimed, d)
		d, r = notify.Delivery{}, eventRow{}
		return nil
	})
	if err != nil {
		return nil, 0, unavailable(err)
	}
	sort.Slice(claimed, func(i, j int) bool { return claimed[i].Event.Seq < claimed[j].Event.Seq })
	return claimed, read, nil
}

// ClaimDeliveries claims up to limit of endpoint id's pending deliveries
// that are due, oldest due first, while it is enabled: each gets its next attempt number, and
// is not due again until lease has passed, when another replica may take
// it up (the attempt is then presumed lost). It returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) ClaimDeliveries(ctx context.Context, id int64, limit int, lease time.Duration) ([]notify.Delivery, error) {
	rows, err := db.Pool.Query(ctx, `
        UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + $3 * interval '1 microsecond',
            updated_at = now()
        FROM (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at <= now()
                  AND EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.id = $1 AND w.enabled)
              ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) due
        JOIN events e ON true `+receivedJoin+`
        WHERE d.id = due.id AND e.id = d.event_id
        RETURNING d.id, d.attempts, d.expires_at, `+eventSelect,
		id, limit, lease.Microseconds())
	if err != nil {
		return nil, unavailable(err)
	}
	var out []notify.Delivery
	var d notify.Delivery
	var r eventRow
	_, err = pgx.ForEachRow(rows, append([]any{&d.ID, &d.Attempt, &d.ExpiresAt}, r.dest()...), func() error {
		e, err := r.event()
		if err != nil {
			return err
		}
		d.EndpointID, d.Event = id, e
		out = append(out, d)
		d, r = notify.Delivery{}, eventRow{}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// recordAttempts writes the attempts and what they leave their deliveries
// at. An attempt that a lease expiry has overtaken (the delivery was
// claimed again since) changes its delivery only if it succeeded.
//
// The deliveries are found by their ids ($1, the primary key), and
// "pending" is said as neither delivered nor dead: where the statistics
// know of fewer deliveries, or fewer pending ones, than there are (a
// backlog that grew since the last ANALYZE: an endpoint back after an
// outage, a replay), a join on the attempts alone was planned as a scan
// of the table, or of every pending delivery through
// webhook_deliveries_due_idx, for every batch (TestPlans_RecordAttempts).
const recordAttempts = `
WITH attempt AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[],
                         $8::boolean[], $9::timestamptz[], $10::boolean[])
        AS attempt(delivery_id, attempt, started_at, duration_ms, status_code, error, response, ok, next_at, dead)
), logged AS (
    INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response)
    SELECT delivery_id, attempt, started_at, duration_ms, NULLIF(status_code, 0), error, response FROM attempt
    WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE id = ANY($1::bigint[]))
)
UPDATE webhook_deliveries d SET
    status = CASE WHEN a.ok THEN 'delivered' WHEN a.dead THEN 'dead' ELSE 'pending' END,
    next_attempt_at = CASE WHEN a.ok OR a.dead THEN d.next_attempt_at ELSE a.next_at END,
    last_status_code = NULLIF(a.status_code, 0), last_error = a.error,
    delivered_at = CASE WHEN a.ok THEN now() END, updated_at = now()
FROM attempt a
WHERE d.id = ANY($1::bigint[]) AND d.id = a.delivery_id AND d.status NOT IN ('delivered', 'dead')
    AND (d.attempts = a.attempt OR a.ok)`

// endpointStreaks moves each endpoint's failure streak: a success clears
// it, a failure starts it (rows left as they are are not written).
const endpointStreaks = `
UPDATE webhook_endpoints w SET failing_since = CASE WHEN h.ok THEN NULL ELSE h.failed_at END
FROM unnest($1::bigint[], $2::boolean[], $3::timestamptz[]) AS h(endpoint_id, ok, failed_at)
WHERE w.id = h.endpoint_id AND (h.ok AND w.failing_since IS NOT NULL OR NOT h.ok AND w.failing_since IS NULL)`

// disableFailing disables the endpoints of $1 whose streak of failures is
// older than $2, and answers their ids.
const disableFailing = `
UPDATE webhook_endpoints SET enabled = false, updated_at = now(),
    disabled_reason = 'every attempt failed since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
WHERE id = ANY($1) AND enabled AND failing_since <= now() - $2 * interval '1 microsecond'
RETURNING id`

// RecordAttempts records attempts in one transaction: each attempt, its
// delivery's new status (delivered, pending until its NextAt, or dead),
// and each endpoint's failure streak; an endpoint every attempt of which
// has failed for longer than disableAfter is disabled. It returns the ids
// of the endpoints it disabled, and an EUNAVAILABLE *notify.Error when the
// database cannot be reached.
func (db *DB) RecordAttempts(ctx context.Context, attempts []notify.Attempt, disableAfter time.Duration) ([]int64, error) {
	if len(attempts) == 0 {
		return nil, nil
	}
	var c struct {
		id                []int64
		attempt, ms, code []int32
		started, next     []time.Time
		errText, response []string
		ok, dead          []bool
		endpoints         []int64
		endpointOK        []bool
		endpointFailedAt  []time.Time
	}
	health := map[int64]int{}
	for _, a := range attempts {
		c.id, c.attempt, c.started = append(c.id, a.DeliveryID), append(c.attempt, int32(a.Attempt)), append(c.started, a.StartedAt)
		c.ms, c.code = append(c.ms, int32(a.Duration.Milliseconds())), append(c.code, int32(a.StatusCode))
		c.errText, c.response = append(c.errText, validText(a.Error)), append(c.response, validText(a.Response))
		c.ok, c.next, c.dead = append(c.ok, a.OK), append(c.next, a.NextAt), append(c.dead, a.Dead)
		i, seen := health[a.EndpointID]
		if !seen {
			i = len(c.endpoints)
			health[a.EndpointID] = i
			c.endpoints, c.endpointOK, c.endpointFailedAt = append(c.endpoints, a.EndpointID), append(c.endpointOK, false), append(c.endpointFailedAt, a.StartedAt)
		}
		c.endpointOK[i] = c.endpointOK[i] || a.OK
		if a.StartedAt.Before(c.endpointFailedAt[i]) {
			c.endpointFailedAt[i] = a.StartedAt
		}
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	batch := &pgx.Batch{}
	batch.Queue(recordAttempts, c.id, c.attempt, c.started, c.ms, c.code, c.errText, c.response, c.ok, c.next, c.dead)
	batch.Queue(endpointStreaks, c.endpoints, c.endpointOK, c.endpointFailedAt)
	var disabled []int64
	batch.Queue(disableFailing, c.endpoints, disableAfter.Microseconds()).Query(func(rows pgx.Rows) error {
		var err error
		disabled, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, unavailable(err)
	}
	return disabled, nil
}

// validText returns s with any invalid UTF-8 and NUL replaced: a
// receiver's answer is kept as text.
func validText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

const deliveryColumns = `d.id, d.endpoint_id, d.event_id, e.type, d.status, d.attempts,
    CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, d.last_status_code, d.last_error, d.created_at, d.delivered_at, d.expires_at`

func scanDelivery(row pgx.Row) (*view.Delivery, error) {
	var d view.Delivery
	var eventID int64
	err := row.Scan(&d.ID, &d.EndpointID, &eventID, &d.EventType, &d.Status, &d.Attempts, &d.NextAttemptAt,
		&d.LastStatusCode, &d.LastError, &d.CreatedAt, &d.DeliveredAt, &d.ExpiresAt)
	d.EventID = notify.EventID(eventID)
	return &d, err
}

// Deliveries lists an endpoint's deliveries newest first, a page at a
// time, and returns the cursor of the next page ("" after the last). It
// returns an ENOTFOUND *notify.Error for an unknown endpoint, an EINVALID
// one for a cursor it did not make, and an EUNAVAILABLE one when the
// database cannot be reached.
func (db *DB) Deliveries(ctx context.Context, f view.DeliveryFilter) ([]*view.Delivery, string, error) {
	if _, err := db.Endpoint(ctx, f.EndpointID); err != nil {
		return nil, "", err
	}
	limit := clampLimit(f.Limit)
	var after struct {
		ID int64 `json:"i"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.endpoint_id = $1 AND ($2 = '' OR d.status = $2) AND ($3::bigint = 0 OR d.id < $3)
        ORDER BY d.id DESC LIMIT $4`, f.EndpointID, f.Status, after.ID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, scanDelivery)
	if err != nil {
		return nil, "", err
	}
	if out == nil { // none: an empty list, not nil
		out = []*view.Delivery{}
	}
	return pageOf(out, limit, func(last *view.Delivery) any {
		after.ID = last.ID
		return after
	})
}

// Delivery returns delivery id with its attempts. It returns an ENOTFOUND
// *notify.Error when there is none, and an EUNAVAILABLE one when the
// database cannot be reached.
func (db *DB) Delivery(ctx context.Context, id int64) (*view.Delivery, error) {
	d, err := scanDelivery(db.Pool.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.id = $1`, id))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "unknown_delivery", "no webhook delivery %d", id))
	}
	rows, err := db.Pool.Query(ctx, `SELECT attempt, started_at, duration_ms, status_code, error, response
        FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt, id`, id)
	if err != nil {
		return nil, unavailable(err)
	}
	var a view.Attempt
	d.AttemptLog = []view.Attempt{}
	_, err = pgx.ForEachRow(rows, []any{&a.Attempt, &a.StartedAt, &a.DurationMS, &a.StatusCode, &a.Error, &a.Response}, func() error {
		d.AttemptLog = append(d.AttemptLog, a)
		a = view.Attempt{}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return d, nil
}

// RetryDelivery makes delivery id due now, whatever its status, with a
// fresh delivery window. It returns an ENOTFOUND *notify.Error when there
// is none, and an EUNAVAILABLE one when the database cannot be reached.
func (db *DB) RetryDelivery(ctx context.Context, id int64) (*view.Delivery, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
        expires_at = now() + $2 * interval '1 microsecond', updated_at = now() WHERE id = $1`, id, notify.DeliveryWindow.Microseconds())
	if err != nil {
		return nil, unavailable(err)
	}
	if tag.RowsAffected() == 0 {
		return nil, notify.Errorf(notify.ENOTFOUND, "unknown_delivery", "no webhook delivery %d", id)
	}
	return db.Delivery(ctx, id)
}

// ReplayEndpoint delivers again to endpoint id every event recorded since
// since that it takes (its filters, as now), whether it was delivered,
// dead, or never given to it: each is due now with a fresh window. It
// returns how many deliveries it queued, an ENOTFOUND *notify.Error when
// there is no such endpoint, and an EUNAVAILABLE one when the database
// cannot be reached.
func (db *DB) ReplayEndpoint(ctx context.Context, id int64, since time.Time) (int, error) {
	tag, err := db.Pool.Exec(ctx, `
        INSERT INTO webhook_deliveries (endpoint_id, event_id, expires_at)
        SELECT w.id, e.id, now() + $3 * interval '1 microsecond'
        FROM webhook_endpoints w, events e
        WHERE w.id = $1 AND e.created_at >= $2 AND `+feedHorizon+` AND (w.app_id = '' OR e.app_id = w.app_id)
          AND `+typeFilter("w.event_types")+`
        ORDER BY e.tx, e.id
        ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', next_attempt_at = now(),
            expires_at = EXCLUDED.expires_at, updated_at = now()`, id, since, notify.DeliveryWindow.Microseconds())
	if err != nil {
		return 0, unavailable(err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := db.Endpoint(ctx, id); err != nil {
			return 0, err
		}
	}
	return int(tag.RowsAffected()), nil
}

// WebhookStats reads the dispatcher's gauges. It returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) WebhookStats(ctx context.Context) (*notify.WebhookStats, error) {
	st := &notify.WebhookStats{OldestPending: map[int64]time.Duration{}, Dead: map[int64]int{}}
	rows, err := db.Pool.Query(ctx, `
        SELECT w.id, w.enabled,
            (SELECT extract(epoch FROM now() - min(d.created_at)) FROM webhook_deliveries d WHERE d.endpoint_id = w.id AND d.status = 'pending'),
            (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = w.id AND d.status = 'dead')
        FROM webhook_endpoints w`)
	if err != nil {
		return nil, unavailable(err)
	}
	var (
		id      int64
		enabled bool
		age     *float64
		dead    int
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &enabled, &age, &dead}, func() error {
		if !enabled {
			st.Disabled++
		} else if age != nil {
			st.OldestPending[id] = time.Duration(*age * float64(time.Second))
		}
		st.Dead[id] = dead
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	var lag *float64
	// The committed events the feed does not show yet: above the horizon.
	err = db.Pool.QueryRow(ctx, `SELECT extract(epoch FROM now() - min(created_at)) FROM events
        WHERE tx >= pg_snapshot_xmin(pg_current_snapshot())`).Scan(&lag)
	if err != nil {
		return nil, unavailable(err)
	}
	if lag != nil {
		st.FeedLag = time.Duration(*lag * float64(time.Second))
	}
	return st, nil
}
