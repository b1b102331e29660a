package postgres

import (
	"bytes"
	"context"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Ingest records d and applies its change in one transaction, and returns
// once that transaction is committed. A notification already stored (same
// app_id and notify_id) only has its delivery count raised:
// Outcome.Duplicate is set and nothing else changes. One whose signed
// content is stored under another notify_id changes nothing
// (Outcome.ReplayOf). It returns an EUNAVAILABLE *notify.Error when the
// database cannot be reached, and an ECONFLICT one when d's notify_id is
// stored with other signed content from the same channel (the first is
// kept); nothing is recorded then.
func (db *DB) Ingest(ctx context.Context, d notify.Decided) (notify.Outcome, error) {
	r := db.IngestBatch(ctx, []notify.Decided{d})[0]
	return r.Outcome, r.Err
}

// Result is one notification's part of a batch.
type Result struct {
	Outcome notify.Outcome
	Err     error
}

// IngestBatch records ds and applies their changes in one transaction
// (group commit), and returns once it is committed, one Result per
// notification in order, each as Ingest describes. Copies of one
// notification within ds count as deliveries of it. When the batch fails on
// data (a value Postgres refuses), each notification is ingested again
// alone, so that one bad notification fails alone and is kept as failed;
// when the database is unavailable, every Result carries an EUNAVAILABLE
// *notify.Error and nothing is recorded.
func (db *DB) IngestBatch(ctx context.Context, ds []notify.Decided) []Result {
	out, err := db.ingest(ctx, ds)
	for try := 0; try < 2 && conflict(err); try++ {
		out, err = db.ingest(ctx, ds)
	}
	if err == nil {
		return out
	}
	out = make([]Result, len(ds))
	if retryable(err) {
		for i := range out {
			out[i].Err = unavailable(err)
		}
		return out
	}
	for i, d := range ds {
		one, err := db.ingestIsolated(ctx, d)
		if err != nil {
			one.Err = unavailable(err)
		}
		out[i] = one
	}
	return out
}

// entry is one distinct notification of a batch, and what became of it.
type entry struct {
	notify.Decided
	copies int // deliveries of it in the batch
	// replays, when set, is the entry of the batch, or the stored
	// notification (ReplayOf), that holds the same signed content under
	// another notify_id: this one is stored nowhere and changes nothing.
	replays *entry
	// pruned is set when the notification was stored and has been pruned
	// since: it is stored nowhere again and changes nothing.
	pruned bool
	// err, when set, refuses the notification: its notify_id is stored
	// with other signed content (a conflict). Nothing is stored.
	err error
	// apply is set when the notification is new and has a change, which
	// the batch applies (see lookUp).
	apply    bool
	stateRow string // changeRow(Change), for an entry to apply
	id       int64
	inserted bool
	out      notify.Outcome
}

type key struct{ app, id string }

func keyOf(n *notify.Notification) key { return key{n.AppID, n.NotifyID} }

// ingest runs one batch in two round trips. The first asks which of its
// notifications are stored already, by key or by signed content, outside
// any transaction: only the changes of the others are applied, so that a
// resend costs little. That look-up is an optimisation, not the guarantee:
// a change applied twice has no second effect (state compares event
// identity, history is unique per notification), the insert's ON CONFLICT
// decides what is new, and the unique index on content_digest fails a
// batch that races another one with the same signed content under another
// notify_id (it is then run again, and finds it).
//
// The second sends the change statements and the inbox insert together,
// one implicit transaction that commits when the last of them is done
// (group commit: one WAL flush for the batch). The insert reads each
// change's outcome back from the state it changed (see insertNotifications),
// so that nothing waits for an answer in between, and each inbox row is
// written once, with its final status.
func (db *DB) ingest(ctx context.Context, ds []notify.Decided) ([]Result, error) {
	entries, entryOf := group(ds)
	if err := db.lookUp(ctx, entries); err != nil {
		return nil, err
	}
	stmts, err := statements(toApply(entries))
	if err != nil {
		return nil, err
	}
	ins, err := insertStatement(entries)
	if err != nil {
		return nil, err
	}
	batch := &pgx.Batch{}
	for _, st := range stmts {
		batch.Queue(st.sql, st.args...) // their answers are read back by the insert
	}
	if ins != nil {
		batch.Queue(ins.sql, ins.args...).Query(func(res pgx.Rows) error { return readInserted(res, entries) })
	}
	if err := db.Pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}
	return results(entryOf), nil
}

// ingestIsolated ingests one notification whose batch failed on data, in
// an explicit transaction with its change behind a savepoint: a change
// Postgres refuses leaves it failed with the error, and it is still kept.
func (db *DB) ingestIsolated(ctx context.Context, d notify.Decided) (Result, error) {
	entries, entryOf := group([]notify.Decided{d})
	if err := db.lookUp(ctx, entries); err != nil {
		return Result{}, err
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return Result{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := applyIsolated(ctx, tx, toApply(entries)); err != nil {
		return Result{}, err
	}
	if ins, err := insertStatement(entries); err != nil {
		return Result{}, err
	} else if ins != nil {
		res, err := tx.Query(ctx, ins.sql, ins.args...)
		if err != nil {
			return Result{}, err
		}
		if err := readInserted(res, entries); err != nil {
			return Result{}, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, err
	}
	return results(entryOf)[0], nil
}

// group returns the distinct notifications of ds as entries, in the order
// of their keys, and the entry of each of ds. Copies of a notification
// count as deliveries of it; a copy of its key with other signed content
// from the same channel is a conflict, and one with its signed content
// under another key replays it. A multi-row upsert may not touch a row
// twice (SQLSTATE 21000), and concurrent batches that lock rows in one
// order wait for each other rather than deadlock.
func group(ds []notify.Decided) ([]*entry, []*entry) {
	byKey := make(map[key]*entry, len(ds))
	byDigest := make(map[string]*entry, len(ds))
	entries := make([]*entry, 0, len(ds))
	entryOf := make([]*entry, len(ds))
	for i, d := range ds {
		k := keyOf(d.Notification)
		if e, ok := byKey[k]; ok {
			if e.Channel == d.Channel && e.ContentDigest != nil && d.ContentDigest != nil &&
				!bytes.Equal(e.ContentDigest, d.ContentDigest) {
				entryOf[i] = &entry{Decided: d, err: conflictError(d.Notification)}
				continue
			}
			e.copies++
			entryOf[i] = e
			continue
		}
		if len(d.ContentDigest) > 0 {
			if e, ok := byDigest[string(d.ContentDigest)]; ok {
				entryOf[i] = &entry{Decided: d, replays: e}
				continue
			}
		}
		e := &entry{Decided: d, copies: 1}
		e.out.Status, e.out.Error = d.Status, d.Error
		byKey[k] = e
		if len(d.ContentDigest) > 0 {
			byDigest[string(d.ContentDigest)] = e
		}
		entries = append(entries, e)
		entryOf[i] = e
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		return a.AppID < b.AppID || a.AppID == b.AppID && a.NotifyID < b.NotifyID
	})
	return entries, entryOf
}

// toApply returns the entries whose change the batch applies, sorted for
// applying: by the state row each locks first, and for one row newest
// first, so that an older change in the same batch reads stale as it would
// arriving later.
func toApply(entries []*entry) []*entry {
	var out []*entry
	for _, e := range entries {
		if e.apply {
			e.stateRow = changeRow(e.Change)
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.stateRow != b.stateRow {
			return a.stateRow < b.stateRow
		}
		return newer(a.Change, b.Change)
	})
	return out
}

// conflictError is the error of a delivery whose notify_id is stored with
// other signed content from the same channel.
func conflictError(n *notify.Notification) error {
	return notify.Errorf(notify.ECONFLICT, "notify_id_conflict",
		"notify_id %s of app %s is stored with other signed content: the first is kept, this one is refused", n.NotifyID, n.AppID)
}

// results returns each notification's result, from its entry; a copy after
// the first, or a notification stored before, is a duplicate.
func results(entryOf []*entry) []Result {
	out := make([]Result, len(entryOf))
	first := make(map[*entry]bool, len(entryOf))
	for i, e := range entryOf {
		switch {
		case e.err != nil:
			out[i].Err = e.err
			continue
		case e.replays != nil:
			orig := e.replays
			if orig.err != nil {
				out[i].Err = orig.err
				continue
			}
			out[i].Outcome = orig.out
			out[i].Outcome.Duplicate = true
			out[i].Outcome.ReplayOf = orig.NotifyID
			continue
		case e.pruned:
			out[i].Outcome = notify.Outcome{Duplicate: true, Pruned: true}
			continue
		}
		out[i].Outcome = e.out
		out[i].Outcome.Duplicate = !e.inserted || first[e]
		first[e] = true
	}
	return out
}

// lookUp marks the entries whose signed content is stored under another
// key as replays, and the new ones that have a change as to apply: the
// others are stored already (by key) and only count a delivery, or have
// no change.
func (db *DB) lookUp(ctx context.Context, entries []*entry) error {
	apps, ids, digests := make([]string, len(entries)), make([]string, len(entries)), make([][]byte, len(entries))
	for i, e := range entries {
		apps[i], ids[i], digests[i] = e.AppID, e.NotifyID, e.ContentDigest
	}
	res, err := db.Pool.Query(ctx, storedNotifications, apps, ids, digests)
	if err != nil {
		return err
	}
	stored, pruned := map[key]bool{}, map[key]bool{}
	replayed := map[key]*entry{}
	var (
		k        key
		byKey    bool
		origID   *string
		status   *string
		count    *int
		isPruned bool
	)
	_, err = pgx.ForEachRow(res, []any{&k.app, &k.id, &byKey, &origID, &status, &count, &isPruned}, func() error {
		switch {
		case byKey:
			stored[k] = true
		case isPruned:
			pruned[k] = true
		case origID != nil:
			orig := &entry{Decided: notify.Decided{Notification: &notify.Notification{AppID: k.app, NotifyID: *origID}}}
			orig.out.Status, orig.out.DeliveryCount = notify.Status(*status), *count
			replayed[k] = orig
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range entries {
		k := keyOf(e.Notification)
		e.replays, e.pruned = replayed[k], pruned[k]
		e.apply = e.replays == nil && !e.pruned && !stored[k] && e.Change != nil
	}
	return nil
}

// applyIsolated applies the entries' changes one by one behind savepoints:
// a change Postgres refuses leaves its notification failed with the error
// (and not applied, so that the insert keeps that status), and the rest of
// the transaction intact.
func applyIsolated(ctx context.Context, tx pgx.Tx, entries []*entry) error {
	for _, e := range entries {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		_, err = applyChange(ctx, sp, e.Change)
		switch {
		case err == nil:
			if err := sp.Commit(ctx); err != nil {
				return err
			}
			continue
		case retryable(err):
			return err
		}
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return rbErr
		}
		e.apply = false
		e.out.Status, e.out.Error = notify.StatusFailed, "store: "+err.Error()
	}
	return nil
}
