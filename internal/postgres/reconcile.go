package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Reconciliation's storage (migration 00010; internal/reconcile). A run's
// targets are its merchants: one replica at a time claims each (a lease,
// FOR UPDATE SKIP LOCKED), and a target is done once, by a conditional
// UPDATE on the attempt that claimed it. A merchant is checked by one
// claim at a time across runs too: a claim also leases the merchant
// (reconcile_leases), and a target of a merchant leased by another run
// waits. A repair goes through the very
// statement of the notification it stands for (applyChange), so it is
// ordered with them by (time, notify_id), and writes its drift record and
// its event in that transaction, only when it applied.

// insertTargets adds a run's targets: for $3 = 'all' every authorized
// merchant of the apps $2 (with its mini-app when the gateway knows the
// merchant app as one: a mini-app row, or a creation order naming it; a
// merchant app may be no mini-app at all, and asking for its versions
// would fail every run) and each app's own mini-app that has state; for
// 'auth_app_id' or 'mini_app_id' the one named $4, with its mini-app
// (the ISV app's own when $4 is an app id), of app $5 when it is set.
const insertTargets = `
INSERT INTO reconcile_targets (run_id, app_id, auth_app_id, mini_app_id)
SELECT $1::bigint, a.app_id, a.auth_app_id,
    CASE WHEN $3::text <> 'all'
           OR EXISTS (SELECT 1 FROM mini_apps m WHERE m.mini_app_id = a.auth_app_id)
           OR EXISTS (SELECT 1 FROM mini_app_orders o WHERE o.mini_app_id = a.auth_app_id AND o.app_id = a.app_id)
         THEN a.auth_app_id ELSE '' END
FROM authorizations a
WHERE a.status = 'authorized' AND a.app_id = ANY($2::text[]) AND ($5::text = '' OR a.app_id = $5)
  AND ($3 = 'all' OR a.auth_app_id = $4::text)
UNION ALL
SELECT $1::bigint, m.app_id, '', m.mini_app_id FROM mini_apps m
WHERE $3 = 'all' AND m.mini_app_id = m.app_id AND m.app_id = ANY($2)
UNION ALL
SELECT $1::bigint, $4, '', $4
WHERE $3 = 'mini_app_id' AND $4 = ANY($2) AND ($5 = '' OR $5 = $4)
ON CONFLICT DO NOTHING`

// StartRun starts a run of req now and returns it. A scoped run covers the
// authorized merchant app named (or the ISV app's own mini-app); a run of
// every merchant with none to check is finished at once. It returns an
// ENOTFOUND *notify.Error when a scoped run finds no such merchant, an
// ECONFLICT one when its authorization is cancelled (its token is no
// longer used), and an EUNAVAILABLE one when the database cannot be
// reached.
func (db *DB) StartRun(ctx context.Context, req notify.RunRequest) (*view.ReconcileRun, error) {
	return db.startRun(ctx, req, "", 0)
}

// StartRunIfDue starts a run of req unless the run clock ("schedule" or
// "outage") says one started within every: the clock's row is moved on by
// a conditional UPDATE in the run's transaction, so replicas asking at
// once start one run. It returns the run, or nil when none is due, and an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) StartRunIfDue(ctx context.Context, req notify.RunRequest, clock string, every time.Duration) (*view.ReconcileRun, error) {
	return db.startRun(ctx, req, clock, every)
}

// RunStartedWithin reports whether the run clock's ("schedule" or
// "outage") last run started within d of now, on the database's clock (d
// is a duration, so the replica's clock need not agree with it). It
// returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) RunStartedWithin(ctx context.Context, clock string, d time.Duration) (bool, error) {
	var within bool
	err := db.Pool.QueryRow(ctx, `SELECT COALESCE((SELECT at >= now() - make_interval(secs => $2) FROM reconcile_state WHERE name = $1), false)`,
		clock, d.Seconds()).Scan(&within)
	return within, unavailable(err)
}

func (db *DB) startRun(ctx context.Context, req notify.RunRequest, clock string, every time.Duration) (*view.ReconcileRun, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if clock != "" {
		tag, err := tx.Exec(ctx, `UPDATE reconcile_state SET at = now() WHERE name = $1 AND at <= now() - make_interval(secs => $2)`,
			clock, every.Seconds())
		if err != nil {
			return nil, unavailable(err)
		}
		if tag.RowsAffected() == 0 {
			return nil, nil
		}
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO reconcile_runs (trigger, scope, scope_id, app_id, reason) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		req.Trigger, req.Scope, req.ScopeID, req.AppID, req.Reason).Scan(&id)
	if err != nil {
		return nil, unavailable(err)
	}
	apps := req.AppIDs
	if apps == nil {
		apps = []string{}
	}
	tag, err := tx.Exec(ctx, insertTargets, id, apps, req.Scope, req.ScopeID, req.AppID)
	if err != nil {
		return nil, unavailable(err)
	}
	n := tag.RowsAffected()
	if n == 0 && req.Scope != notify.ScopeAll {
		return nil, db.noTarget(ctx, req)
	}
	_, err = tx.Exec(ctx, `UPDATE reconcile_runs SET targets = $2,
        status = CASE WHEN $2 = 0 THEN 'finished' ELSE status END, finished_at = CASE WHEN $2 = 0 THEN now() END
        WHERE id = $1`, id, n)
	if err != nil {
		return nil, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, unavailable(err)
	}
	return db.ReconcileRun(ctx, id)
}

// noTarget says why a scoped run found nothing to check.
func (db *DB) noTarget(ctx context.Context, req notify.RunRequest) error {
	var cancelled bool
	err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM authorizations WHERE auth_app_id = $1 AND app_id = ANY($2)
        AND ($3 = '' OR app_id = $3) AND status <> 'authorized')`, req.ScopeID, req.AppIDs, req.AppID).Scan(&cancelled)
	if err != nil {
		return unavailable(err)
	}
	if cancelled {
		return notify.Errorf(notify.ECONFLICT, "authorization_cancelled", "merchant app %s cancelled its authorization: its token is not used, nothing to ask Alipay with", req.ScopeID)
	}
	return notify.Errorf(notify.ENOTFOUND, "not_found", "no authorized merchant app or own mini-app %q of the apps that can call Alipay", req.ScopeID)
}

// ClaimTarget claims a pending target of a running run (oldest run first)
// among those of appIDs that no lease holds and whose merchant no other
// claim is checking: it takes the merchant's lease (reconcile_leases,
// across runs, so that overlapping runs never check a merchant twice at
// once) and the target's, both of lease, counts the attempt, and returns
// the target, or nil when none can be claimed now. A target whose merchant
// another run holds stays pending, for a later claim. The target is picked
// FOR UPDATE SKIP LOCKED, so replicas claiming at once get different
// targets, and the merchant's lease is taken by INSERT ... ON CONFLICT DO
// UPDATE ... WHERE lease_until < now(), so of two claims of one merchant
// in different runs one wins. It returns an EUNAVAILABLE *notify.Error when
// the database cannot be reached.
func (db *DB) ClaimTarget(ctx context.Context, appIDs []string, lease time.Duration) (*notify.ReconcileTarget, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// A merchant another claim leased since the pick is seen by the next
	// pick (a new snapshot) and passed over: a few picks always do.
	for range 8 {
		var t notify.ReconcileTarget
		err := tx.QueryRow(ctx, `SELECT tg.run_id, tg.app_id, tg.auth_app_id, tg.mini_app_id, tg.attempts + 1 FROM reconcile_targets tg
            JOIN reconcile_runs r ON r.id = tg.run_id AND r.status = 'running'
            WHERE tg.status = 'pending' AND tg.app_id = ANY($1) AND (tg.lease_until IS NULL OR tg.lease_until < now())
              AND NOT EXISTS (SELECT 1 FROM reconcile_leases l
                              WHERE l.app_id = tg.app_id AND l.auth_app_id = tg.auth_app_id AND l.lease_until >= now())
            ORDER BY tg.run_id, tg.app_id, tg.auth_app_id
            LIMIT 1
            FOR UPDATE OF tg SKIP LOCKED`, appIDs).Scan(&t.RunID, &t.AppID, &t.AuthAppID, &t.MiniAppID, &t.Attempt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, unavailable(err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO reconcile_leases AS l (app_id, auth_app_id, run_id, attempt, lease_until)
            VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
            ON CONFLICT (app_id, auth_app_id) DO UPDATE
                SET run_id = EXCLUDED.run_id, attempt = EXCLUDED.attempt, lease_until = EXCLUDED.lease_until
                WHERE l.lease_until < now()`, t.AppID, t.AuthAppID, t.RunID, t.Attempt, lease.Seconds())
		if err != nil {
			return nil, unavailable(err)
		}
		if tag.RowsAffected() == 0 {
			continue // another run's claim took the merchant first
		}
		_, err = tx.Exec(ctx, `UPDATE reconcile_targets SET attempts = $4, lease_until = now() + make_interval(secs => $5)
            WHERE run_id = $1 AND app_id = $2 AND auth_app_id = $3`, t.RunID, t.AppID, t.AuthAppID, t.Attempt, lease.Seconds())
		if err != nil {
			return nil, unavailable(err)
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, unavailable(err)
		}
		return &t, nil
	}
	return nil, nil
}

// ExtendLease moves t's lease, and its merchant's, on to lease from now,
// unless another claim took either since. It reports whether t is still
// this claim's.
func (db *DB) ExtendLease(ctx context.Context, t *notify.ReconcileTarget, lease time.Duration) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `WITH merchant AS (
            UPDATE reconcile_leases SET lease_until = now() + make_interval(secs => $5)
            WHERE app_id = $2 AND auth_app_id = $3 AND run_id = $1 AND attempt = $4
            RETURNING 1)
        UPDATE reconcile_targets SET lease_until = now() + make_interval(secs => $5)
        WHERE run_id = $1 AND app_id = $2 AND auth_app_id = $3 AND attempts = $4 AND status = 'pending'
          AND EXISTS (SELECT 1 FROM merchant)`,
		t.RunID, t.AppID, t.AuthAppID, t.Attempt, lease.Seconds())
	if err != nil {
		return false, unavailable(err)
	}
	return tag.RowsAffected() == 1, nil
}

// FinishTarget marks t done with checked entities compared, unless another
// claim took it since (then it changes nothing and reports false), and
// finishes its run when no target is left pending: the run's row is locked
// first, so that of two replicas finishing the last two targets at once
// the second sees the first's. It reports whether t was this claim's and
// whether the run finished. It returns an EUNAVAILABLE *notify.Error when
// the database cannot be reached.
func (db *DB) FinishTarget(ctx context.Context, t *notify.ReconcileTarget, checked int) (done, finished bool, err error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return false, false, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT 1 FROM reconcile_runs WHERE id = $1 FOR UPDATE`, t.RunID); err != nil {
		return false, false, unavailable(err)
	}
	tag, err := tx.Exec(ctx, `UPDATE reconcile_targets SET status = 'done', checked = $5, finished_at = now(), lease_until = NULL
        WHERE run_id = $1 AND app_id = $2 AND auth_app_id = $3 AND attempts = $4 AND status = 'pending'`,
		t.RunID, t.AppID, t.AuthAppID, t.Attempt, checked)
	if err != nil {
		return false, false, unavailable(err)
	}
	// The merchant is free for the other runs' targets.
	_, err = tx.Exec(ctx, `DELETE FROM reconcile_leases WHERE app_id = $2 AND auth_app_id = $3 AND run_id = $1 AND attempt = $4`,
		t.RunID, t.AppID, t.AuthAppID, t.Attempt)
	if err != nil {
		return false, false, unavailable(err)
	}
	if finished, err = finishRun(ctx, tx, t.RunID); err != nil {
		return false, false, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, false, unavailable(err)
	}
	return tag.RowsAffected() == 1, finished, nil
}

// finishRun finishes run id, its row locked, when no target is pending:
// it writes the counts and deletes the targets, and the merchant leases
// its claims left (a replica that died holding one). It reports whether
// it did.
func finishRun(ctx context.Context, tx pgx.Tx, id int64) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE reconcile_runs SET status = 'finished', finished_at = now(),
            checked = (SELECT COALESCE(sum(checked), 0) FROM reconcile_targets WHERE run_id = $1),
            repaired = (SELECT count(*) FROM reconcile_drift WHERE run_id = $1),
            errors = (SELECT count(*) FROM reconcile_errors WHERE run_id = $1)
        WHERE id = $1 AND status = 'running'
          AND NOT EXISTS (SELECT 1 FROM reconcile_targets WHERE run_id = $1 AND status = 'pending')`, id)
	if err != nil || tag.RowsAffected() == 0 {
		return false, err
	}
	if _, err = tx.Exec(ctx, `DELETE FROM reconcile_targets WHERE run_id = $1`, id); err != nil {
		return false, err
	}
	_, err = tx.Exec(ctx, `DELETE FROM reconcile_leases WHERE run_id = $1`, id)
	return err == nil, err
}

// FinishIdleRuns finishes the running runs that have no pending target
// left (a finish missed, a run with none), and returns the ids finished.
// It returns an EUNAVAILABLE *notify.Error when the database cannot be
// reached.
func (db *DB) FinishIdleRuns(ctx context.Context) ([]int64, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id FROM reconcile_runs r WHERE status = 'running'
        AND NOT EXISTS (SELECT 1 FROM reconcile_targets t WHERE t.run_id = r.id AND t.status = 'pending')`)
	if err != nil {
		return nil, unavailable(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, unavailable(err)
	}
	var out []int64
	for _, id := range ids {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return out, unavailable(err)
		}
		finished := false
		_, err = tx.Exec(ctx, `SELECT 1 FROM reconcile_runs WHERE id = $1 FOR UPDATE`, id)
		if err == nil {
			finished, err = finishRun(ctx, tx, id)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		_ = tx.Rollback(context.WithoutCancel(ctx))
		if err != nil {
			return out, unavailable(err)
		}
		if finished {
			out = append(out, id)
		}
	}
	return out, nil
}

// ReconcileSnapshot returns what the gateway holds of t: its
// authorization's status and ordering (what set it: the stored token's
// identity), the mini-app's owner and its versions' audit statuses (those
// of t's app). It returns an EUNAVAILABLE *notify.Error when the database
// cannot be reached.
func (db *DB) ReconcileSnapshot(ctx context.Context, t *notify.ReconcileTarget) (*notify.ReconcileState, error) {
	s := &notify.ReconcileState{Versions: map[string]string{}}
	var (
		auth, owner, setByID *string
		setByAt              *int64
	)
	err := db.Pool.QueryRow(ctx, `SELECT a.status, a.event_at, a.event_notify_id, (SELECT app_id FROM mini_apps WHERE mini_app_id = $3)
        FROM (SELECT 1) AS one LEFT JOIN authorizations a ON a.app_id = $1 AND a.auth_app_id = $2`,
		t.AppID, t.AuthAppID, t.MiniAppID).Scan(&auth, &setByAt, &setByID, &owner)
	if err != nil {
		return nil, unavailable(err)
	}
	s.AuthStatus, s.MiniAppOwner = deref(auth), deref(owner)
	if setByAt != nil {
		s.AuthSetBy = notify.Origin{AppID: t.AppID, NotifyID: deref(setByID), At: *setByAt}
	}
	if t.MiniAppID == "" {
		return s, nil
	}
	rows, err := db.Pool.Query(ctx, `SELECT mini_app_version, audit_status FROM mini_app_versions WHERE mini_app_id = $1 AND app_id = $2`,
		t.MiniAppID, t.AppID)
	if err != nil {
		return nil, unavailable(err)
	}
	var version, status string
	_, err = pgx.ForEachRow(rows, []any{&version, &status}, func() error {
		s.Versions[version] = status
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return s, nil
}

// Repair applies r's change with the statement of the notification it
// stands for, in one transaction with its drift record and its event
// (the change's, as the notification would have made it), and reports
// whether it applied. The row r is about is locked and read first: when it
// already holds r.After (another run, or the notification itself, got
// there since the comparison), or the change is not newer than what set
// it, nothing is written. An AuthCancel with r.Expect applies only while
// the authorization's (event_at, event_notify_id) is still r.Expect's,
// read under the row's lock: when a grant or a refresh replaced the token
// since the check read it, nothing is written and Repair returns an
// ECONFLICT *notify.Error (reason token_changed). It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) Repair(ctx context.Context, r notify.Repair) (bool, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return false, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var (
		before *string
		setBy  notify.Origin
		lock   string
		args   []any
		dest   []any
	)
	switch c := r.Change.(type) {
	case notify.AuthCancel:
		lock, args = `SELECT status, event_at, event_notify_id FROM authorizations WHERE app_id = $1 AND auth_app_id = $2 FOR UPDATE`,
			[]any{c.AppID, c.AuthAppID}
		dest = []any{&before, &setBy.At, &setBy.NotifyID}
	case notify.AuditChange:
		lock, args = `SELECT audit_status FROM mini_app_versions WHERE mini_app_id = $1 AND mini_app_version = $2 FOR UPDATE`, []any{c.MiniAppID, c.Version}
		dest = []any{&before}
	default:
		return false, notify.Errorf(notify.EINTERNAL, "bad_repair", "a repair is an AuthCancel or an AuditChange, not %T", r.Change)
	}
	if err := tx.QueryRow(ctx, lock, args...).Scan(dest...); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, unavailable(err)
	}
	if before != nil && *before == r.After {
		return false, nil
	}
	if r.Expect != nil && (before == nil || setBy.At != r.Expect.At || setBy.NotifyID != r.Expect.NotifyID) {
		return false, notify.Errorf(notify.ECONFLICT, "token_changed",
			"the authorization changed during the check (set by %s, was %s): the token Alipay judged is no longer the stored one", setBy.NotifyID, r.Expect.NotifyID)
	}
	applied, err := applyChange(ctx, tx, r.Change)
	if err != nil || !applied {
		return false, unavailable(err)
	}
	o := r.Change.Ordering()
	_, err = tx.Exec(ctx, `INSERT INTO reconcile_drift (run_id, app_id, auth_app_id, mini_app_id, kind, entity, field, before, after,
            observed_at, notify_id, observed)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (app_id, notify_id, field) DO NOTHING`,
		r.Target.RunID, o.AppID, r.Target.AuthAppID, r.Target.MiniAppID, r.Kind, r.Entity, r.Field, before, r.After,
		time.UnixMilli(o.At).UTC(), o.NotifyID, jsonOrNil(r.Observed))
	if err != nil {
		return false, unavailable(err)
	}
	if err := writeEvents(ctx, tx, o.AppID, o.NotifyID, notify.StatusApplied, []notify.Event{r.Change.Event()}); err != nil {
		return false, unavailable(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, unavailable(err)
	}
	return true, nil
}

// RecordReconcileError records e on its run. It returns an EUNAVAILABLE
// *notify.Error when the database cannot be reached.
func (db *DB) RecordReconcileError(ctx context.Context, e notify.ReconcileError) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO reconcile_errors (run_id, app_id, auth_app_id, mini_app_id, version, method, kind,
            code, sub_code, message)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		e.RunID, e.AppID, e.AuthAppID, e.MiniAppID, e.Version, e.Method, e.Kind, e.Code, e.SubCode, e.Message)
	return unavailable(err)
}

// MarkReconciled sets last_reconciled_at of t's authorization (when
// auth) and of its mini-app (when versions), as checked now. It returns an
// EUNAVAILABLE *notify.Error when the database cannot be reached.
func (db *DB) MarkReconciled(ctx context.Context, t *notify.ReconcileTarget, auth, versions bool) error {
	b := &pgx.Batch{}
	if auth && t.AuthAppID != "" {
		b.Queue(`UPDATE authorizations SET last_reconciled_at = now() WHERE app_id = $1 AND auth_app_id = $2`, t.AppID, t.AuthAppID)
	}
	if versions && t.MiniAppID != "" {
		b.Queue(`UPDATE mini_apps SET last_reconciled_at = now() WHERE mini_app_id = $1 AND app_id = $2`, t.MiniAppID, t.AppID)
	}
	if b.Len() == 0 {
		return nil
	}
	return unavailable(db.Pool.SendBatch(ctx, b).Close())
}

// Heartbeat records that a reconciler runs now, and returns when one last
// did (anywhere). It returns an EUNAVAILABLE *notify.Error when the
// database cannot be reached.
func (db *DB) Heartbeat(ctx context.Context) (time.Time, error) {
	var last time.Time
	err := db.Pool.QueryRow(ctx, `UPDATE reconcile_state s SET at = now()
        FROM (SELECT at FROM reconcile_state WHERE name = 'heartbeat' FOR UPDATE) AS last
        WHERE s.name = 'heartbeat' RETURNING last.at`).Scan(&last)
	return last, unavailable(err)
}

// runColumns are a run's columns (alias r), with its counts so far while
// it runs.
const runColumns = `r.id, r.trigger, r.scope, r.scope_id, r.app_id, r.reason, r.status, r.started_at, r.finished_at, r.targets,
    CASE WHEN r.status = 'running' THEN (SELECT count(*) FROM reconcile_targets t WHERE t.run_id = r.id AND t.status = 'done')::int ELSE r.targets END,
    CASE WHEN r.status = 'running' THEN (SELECT COALESCE(sum(checked), 0) FROM reconcile_targets t WHERE t.run_id = r.id)::int ELSE r.checked END,
    CASE WHEN r.status = 'running' THEN (SELECT count(*) FROM reconcile_drift d WHERE d.run_id = r.id)::int ELSE r.repaired END,
    CASE WHEN r.status = 'running' THEN (SELECT count(*) FROM reconcile_errors e WHERE e.run_id = r.id)::int ELSE r.errors END`

func scanRun(row pgx.Row) (*view.ReconcileRun, error) {
	var r view.ReconcileRun
	err := row.Scan(&r.ID, &r.Trigger, &r.Scope, &r.ScopeID, &r.AppID, &r.Reason, &r.Status, &r.StartedAt, &r.FinishedAt,
		&r.Targets, &r.Done, &r.Checked, &r.Repaired, &r.Errors)
	return &r, err
}

// maxRunErrors is how many of a run's errors ReconcileRun lists.
const maxRunErrors = 100

// ReconcileRun returns run id with its first errors. It returns an
// ENOTFOUND *notify.Error when there is none, and an EUNAVAILABLE one when
// the database cannot be reached.
func (db *DB) ReconcileRun(ctx context.Context, id int64) (*view.ReconcileRun, error) {
	r, err := scanRun(db.Pool.QueryRow(ctx, `SELECT `+runColumns+` FROM reconcile_runs r WHERE r.id = $1`, id))
	if err != nil {
		return nil, rowErr(err, notify.Errorf(notify.ENOTFOUND, "not_found", "no reconcile run %d", id))
	}
	rows, err := db.Pool.Query(ctx, `SELECT app_id, auth_app_id, mini_app_id, version, method, kind, code, sub_code, message, at
        FROM reconcile_errors WHERE run_id = $1 ORDER BY id LIMIT $2`, id, maxRunErrors)
	if err != nil {
		return nil, unavailable(err)
	}
	r.ErrorLog, err = collect(rows, func(row pgx.Row) (view.RunError, error) {
		var e view.RunError
		err := row.Scan(&e.AppID, &e.AuthAppID, &e.MiniAppID, &e.Version, &e.Method, &e.Kind, &e.Code, &e.SubCode, &e.Message, &e.At)
		return e, err
	})
	return r, err
}

// ReconcileRuns lists runs newest first, a page at a time. It returns an
// EINVALID *notify.Error for a cursor it did not make.
func (db *DB) ReconcileRuns(ctx context.Context, f view.RunFilter) ([]*view.ReconcileRun, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		ID int64 `json:"i"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+runColumns+` FROM reconcile_runs r
        WHERE ($1::bigint = 0 OR r.id < $1) ORDER BY r.id DESC LIMIT $2`, after.ID, limit+1)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, scanRun)
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.ReconcileRun) any {
		after.ID = last.ID
		return after
	})
}

// driftQuery is Drift's statement, planned for its actual parameters: the
// primary key backwards, or reconcile_drift_auth_idx, _mini_idx (each
// (id, ...) in the listing's order) or _run_idx for one run's.
const driftQuery = `SELECT id, run_id, app_id, auth_app_id, mini_app_id, kind, entity, field, before, after,
        observed_at, source, notify_id, observed, created_at
    FROM reconcile_drift
    WHERE ($1 = '' OR auth_app_id = $1) AND ($2 = '' OR mini_app_id = $2) AND ($3 = '' OR kind = $3)
      AND ($4::timestamptz IS NULL OR created_at >= $4) AND ($5::bigint = 0 OR id < $5)
      AND ($7::bigint = 0 OR run_id = $7)
    ORDER BY id DESC LIMIT $6`

// Drift lists drift records newest first, a page at a time, filtered by f
// (of one run, merchant app, mini-app, kind, since a time). It returns an
// EINVALID *notify.Error for a cursor it did not make.
func (db *DB) Drift(ctx context.Context, f view.DriftFilter) ([]*view.Drift, string, error) {
	limit := clampLimit(f.Limit)
	var after struct {
		ID int64 `json:"i"`
	}
	if f.Cursor != "" {
		if err := decodeCursor(f.Cursor, &after); err != nil {
			return nil, "", err
		}
	}
	rows, err := db.Pool.Query(ctx, driftQuery, pgx.QueryExecModeExec, f.AuthAppID, f.MiniAppID, f.Kind, f.Since, after.ID, limit+1, f.RunID)
	if err != nil {
		return nil, "", unavailable(err)
	}
	out, err := collect(rows, func(row pgx.Row) (*view.Drift, error) {
		var d view.Drift
		err := row.Scan(&d.ID, &d.RunID, &d.AppID, &d.AuthAppID, &d.MiniAppID, &d.Kind, &d.Entity, &d.Field, &d.Before, &d.After,
			&d.ObservedAt, &d.Source, &d.NotifyID, &d.Observed, &d.CreatedAt)
		d.Observed = nullJSON(d.Observed)
		return &d, err
	})
	if err != nil {
		return nil, "", err
	}
	return pageOf(out, limit, func(last *view.Drift) any {
		after.ID = last.ID
		return after
	})
}
