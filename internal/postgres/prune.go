package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// pruneLock is the advisory lock a prune holds for its whole run: one
// replica prunes at a time.
const pruneLock = `SELECT pg_try_advisory_lock(hashtext('alipay-notify-gateway prune ' || current_schema()))`

// Pruning is a prune run: a connection holding the prune lock.
type Pruning struct {
	conn *pgxpool.Conn
}

// StartPruning takes the prune lock on a connection of its own. It returns
// nil (and no error) when another replica holds it, and an EUNAVAILABLE
// *notify.Error when the database cannot be reached. The caller must
// call Done.
func (db *DB) StartPruning(ctx context.Context) (notify.Pruning, error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, pruneLock).Scan(&ok); err != nil {
		conn.Release()
		return nil, unavailable(err)
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return &Pruning{conn: conn}, nil
}

// Done releases the prune lock and the connection. A connection that
// cannot say it released the lock is closed, which releases it.
func (p *Pruning) Done() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('alipay-notify-gateway prune ' || current_schema()))`); err != nil {
		_ = p.conn.Conn().Close(ctx)
	}
	p.conn.Release()
}

// The prune statements: each deletes at most LIMIT (the batch, written in
// by Prune) of the oldest rows older than $1 (in one transaction of its own, locking no row another holds)
// and says how many it deleted. Rows are taken oldest first along an index
// (the primary key where ids grow with time), so a batch reads little more
// than what it deletes.
var pruneStatements = map[notify.Prunable][]string{
	// One statement per status, each over an index in received_at order:
	// notifications_received_idx for applied, notifications_not_applied_idx
	// for the others. The digest of each deleted row's signed content is kept
	// (notifications_pruned) in the same statement.
	notify.PruneNotifications: {pruneInbox("applied"), pruneInbox("stale")},
	notify.PruneFailed:        {pruneInbox("failed"), pruneInbox("unhandled")},
	// Finished deliveries with their attempts, then the events no pending
	// delivery still needs (a delivery made pending again by a retry or a
	// replay keeps its event, and every later one, until it ends).
	notify.PruneEvents: {`
WITH doomed AS (
    SELECT id FROM webhook_deliveries
    WHERE created_at < $1 AND updated_at < $1 AND status <> 'pending'
    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
), attempts AS (
    DELETE FROM webhook_attempts a USING doomed WHERE a.delivery_id = doomed.id
), gone AS (
    DELETE FROM webhook_deliveries d USING doomed WHERE d.id = doomed.id RETURNING d.id
)
SELECT count(*) FROM gone`, `
WITH doomed AS (
    SELECT id FROM events
    WHERE created_at < $1
      AND id < COALESCE((SELECT min(event_id) FROM webhook_deliveries WHERE status = 'pending'), 9223372036854775807)
    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM events e USING doomed WHERE e.id = doomed.id RETURNING e.id
)
SELECT count(*) FROM gone`},
	notify.PruneTemplateMessages: {`
WITH doomed AS (
    SELECT id FROM template_messages
    WHERE created_at < $1 AND status <> 'pending'
    ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM template_messages m USING doomed WHERE m.id = doomed.id RETURNING m.id
)
SELECT count(*) FROM gone`},
	// The recipients of the batches that ended before the cutoff, then the
	// batches left with none.
	notify.PruneTemplateBatches: {`
WITH doomed AS (
    SELECT r.batch_id, r.seq FROM template_message_recipients r
    WHERE r.batch_id IN (SELECT id FROM template_message_batches
                         WHERE status IN ('finished', 'cancelled', 'stopped') AND finished_at < $1)
    ORDER BY r.batch_id, r.seq LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM template_message_recipients r USING doomed WHERE r.batch_id = doomed.batch_id AND r.seq = doomed.seq RETURNING 1
)
SELECT count(*) FROM gone`, `
WITH doomed AS (
    SELECT id FROM template_message_batches b
    WHERE status IN ('finished', 'cancelled', 'stopped') AND finished_at < $1
      AND NOT EXISTS (SELECT 1 FROM template_message_recipients r WHERE r.batch_id = b.id)
    ORDER BY finished_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM template_message_batches b USING doomed WHERE b.id = doomed.id RETURNING 1
)
SELECT count(*) FROM gone`},
	// The errors of the reconciliation runs that finished before the
	// cutoff, then those runs, but for the ones that repaired something:
	// they stay as the context of their drift records, which are never
	// pruned (the history of the state, like the audit history).
	notify.PruneReconcileRuns: {`
WITH doomed AS (
    SELECT e.id FROM reconcile_errors e
    WHERE e.run_id IN (SELECT id FROM reconcile_runs WHERE status = 'finished' AND finished_at < $1)
    ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM reconcile_errors e USING doomed WHERE e.id = doomed.id RETURNING 1
)
SELECT count(*) FROM gone`, `
WITH doomed AS (
    SELECT id FROM reconcile_runs r
    WHERE status = 'finished' AND finished_at < $1 AND repaired = 0
      AND NOT EXISTS (SELECT 1 FROM reconcile_errors e WHERE e.run_id = r.id)
    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM reconcile_runs r USING doomed WHERE r.id = doomed.id RETURNING 1
)
SELECT count(*) FROM gone`},
	notify.PruneDigests: {`
WITH doomed AS (
    SELECT content_digest FROM notifications_pruned WHERE pruned_at < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM notifications_pruned p USING doomed WHERE p.content_digest = doomed.content_digest RETURNING 1
)
SELECT count(*) FROM gone`},
}

func pruneInbox(status notify.Status) string {
	return `
WITH doomed AS (
    SELECT id FROM notifications
    WHERE status = '` + string(status) + `' AND received_at < $1
    ORDER BY received_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM notifications n USING doomed WHERE n.id = doomed.id RETURNING n.content_digest
), kept AS (
    INSERT INTO notifications_pruned (content_digest)
    SELECT content_digest FROM gone WHERE content_digest IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM gone`
}

// Prune deletes at most limit of the oldest records that c names (each
// of its statements at most limit), in short transactions of their own. It
// returns how many it deleted (for events, the events and the deliveries;
// for template batches, the batches and their recipients;
// fewer than limit: none is left), and an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (p *Pruning) Prune(ctx context.Context, c notify.Cutoff, limit int) (int64, error) {
	stmts, ok := pruneStatements[c.What]
	if !ok {
		return 0, fmt.Errorf("store: unable to prune %q: nothing of that name", c.What)
	}
	var total int64
	for _, sql := range stmts {
		// The limit is written into the statement: with a parameter, a
		// generic plan takes it for a tenth of the table and hash-joins a
		// scan of all of it (events, digests).
		sql = strings.Replace(sql, "LIMIT $2", "LIMIT "+strconv.Itoa(limit), 1)
		var n int64
		if err := p.conn.QueryRow(ctx, sql, c.Before).Scan(&n); err != nil {
			return total, unavailable(err)
		}
		total += n
	}
	return total, nil
}

// prunableCounts count what each prune would delete now, as the prune
// statements choose.
var prunableCounts = map[notify.Prunable]string{
	notify.PruneNotifications: `SELECT count(*) FROM notifications WHERE status IN ('applied', 'stale') AND received_at < $1`,
	notify.PruneFailed:        `SELECT count(*) FROM notifications WHERE status IN ('failed', 'unhandled') AND received_at < $1`,
	notify.PruneEvents: `SELECT (SELECT count(*) FROM events WHERE created_at < $1
        AND id < COALESCE((SELECT min(event_id) FROM webhook_deliveries WHERE status = 'pending'), 9223372036854775807))
    + (SELECT count(*) FROM webhook_deliveries WHERE created_at < $1 AND updated_at < $1 AND status <> 'pending')`,
	notify.PruneTemplateMessages: `SELECT count(*) FROM template_messages WHERE created_at < $1 AND status <> 'pending'`,
	notify.PruneTemplateBatches: `SELECT (SELECT count(*) FROM template_message_recipients WHERE batch_id IN
            (SELECT id FROM template_message_batches WHERE status IN ('finished', 'cancelled', 'stopped') AND finished_at < $1))
        + (SELECT count(*) FROM template_message_batches WHERE status IN ('finished', 'cancelled', 'stopped') AND finished_at < $1)`,
	notify.PruneReconcileRuns: `SELECT (SELECT count(*) FROM reconcile_errors WHERE run_id IN
            (SELECT id FROM reconcile_runs WHERE status = 'finished' AND finished_at < $1))
        + (SELECT count(*) FROM reconcile_runs WHERE status = 'finished' AND finished_at < $1 AND repaired = 0)`,
	notify.PruneDigests: `SELECT count(*) FROM notifications_pruned WHERE pruned_at < $1`,
}

// Prunable counts the records a prune by c would delete now, as Prune
// counts them (for events, the events and the deliveries; the deliveries'
// attempts go with them, uncounted). It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) Prunable(ctx context.Context, c notify.Cutoff) (int64, error) {
	sql, ok := prunableCounts[c.What]
	if !ok {
		return 0, fmt.Errorf("store: unable to count %q: nothing of that name", c.What)
	}
	var n int64
	if err := db.Pool.QueryRow(ctx, sql, c.Before).Scan(&n); err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// retainedTables are the tables TableSizes measures.
var retainedTables = []string{"notifications", "notifications_pruned", "events", "webhook_deliveries", "webhook_attempts", "template_messages",
	"template_message_batches", "template_message_recipients"}

// TableSizes returns the size of each table a prune deletes from, its
// indexes and TOAST included. It returns an EUNAVAILABLE *notify.Error when
// the database cannot be reached.
func (db *DB) TableSizes(ctx context.Context) (map[string]int64, error) {
	rows, err := db.Pool.Query(ctx, `SELECT t, pg_total_relation_size(t::regclass) FROM unnest($1::text[]) AS t`, retainedTables)
	if err != nil {
		return nil, unavailable(err)
	}
	sizes := make(map[string]int64, len(retainedTables))
	var (
		name string
		size int64
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &size}, func() error {
		sizes[name] = size
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return sizes, nil
}
