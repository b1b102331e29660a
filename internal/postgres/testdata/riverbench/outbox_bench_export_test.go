package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The variants of the intake that outbox_bench_test.go measures against
// each other: ingest's round trips and statements, but for what the outbox
// adds to its transaction.

// BenchEvent is an event of an ingested batch, as a job queue in the
// intake's transaction would be given it.
type BenchEvent struct {
	AppID, NotifyID, Type string
	OccurredAt            time.Time
	Data                  json.RawMessage // a notification.received's with its status and error, as the insert writes it
}

// BenchOutbox says how IngestBench differs from ingest.
type BenchOutbox struct {
	// NoEvents sends the inbox insert without its events CTE: the intake as
	// it was before the outbox (the insert up to its inbox CTE's RETURNING).
	NoEvents bool
	// Queue, when set, is given the batch once the insert is queued in it,
	// with the events it is to write (each entry taken as inserted and its
	// change as applied), to queue more statements in the same implicit
	// transaction.
	Queue func(b *pgx.Batch, events []BenchEvent) error
	// InTx, when set, makes the batch run in an explicit transaction, and is
	// then called in it with the events the insert wrote, before the commit:
	// what a job queue's InsertManyTx is given.
	InTx func(ctx context.Context, tx pgx.Tx, events []BenchEvent) error
}

// inboxOnly is insertNotifications without its events: the inbox CTE's
// statement, which takes the first inboxOnlyArgs arguments.
var inboxOnly = func() string {
	const open, closing = "WITH inbox AS (\n", "\n), outbox AS ("
	i, j := strings.Index(insertNotifications, open), strings.Index(insertNotifications, closing)
	if i < 0 || j < i {
		panic("postgres: the inbox CTE is not where the benchmark looks for it in insertNotifications")
	}
	return insertNotifications[i+len(open) : j]
}()

const inboxOnlyArgs = 17

// InboxOnlySQL is the statement of BenchOutbox.NoEvents.
var InboxOnlySQL = inboxOnly

// IngestBench ingests ds as ingest does (the look-up, then the change
// statements and the inbox insert in one batch), but for o, and returns the
// number of notifications inserted and of events written. Any notification
// the batch refuses, or does not insert, is an error: the benchmark gives
// only new ones.
func (db *DB) IngestBench(ctx context.Context, ds []notify.Decided, o BenchOutbox) (inserted, events int, err error) {
	entries, _ := group(ds)
	if err := db.lookUp(ctx, entries); err != nil {
		return 0, 0, err
	}
	stmts, err := statements(toApply(entries))
	if err != nil {
		return 0, 0, err
	}
	ins, err := insertStatement(entries)
	if err != nil {
		return 0, 0, err
	}
	if ins == nil {
		return 0, 0, fmt.Errorf("bench: nothing to insert")
	}
	if o.NoEvents {
		ins = &statement{inboxOnly, ins.args[:inboxOnlyArgs]}
	}
	batch := &pgx.Batch{}
	for _, st := range stmts {
		batch.Queue(st.sql, st.args...)
	}
	batch.Queue(ins.sql, ins.args...).Query(func(res pgx.Rows) error { return readInserted(res, entries) })
	if o.Queue != nil {
		if err := o.Queue(batch, benchEvents(entries, true)); err != nil {
			return 0, 0, err
		}
	}
	if o.InTx == nil {
		if err := db.Pool.SendBatch(ctx, batch).Close(); err != nil {
			return 0, 0, err
		}
	} else {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return 0, 0, err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return 0, 0, err
		}
		if err := o.InTx(ctx, tx, benchEvents(entries, false)); err != nil {
			return 0, 0, err
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, 0, err
		}
	}
	for _, e := range entries {
		switch {
		case e.err != nil:
			return 0, 0, e.err
		case !e.inserted:
			return 0, 0, fmt.Errorf("bench: %s of app %s is not new", e.NotifyID, e.AppID)
		}
		inserted++
		if o.NoEvents {
			continue
		}
		for _, ev := range e.Events {
			if !ev.IfApplied || e.out.Status == notify.StatusApplied {
				events++
			}
		}
	}
	return inserted, events, nil
}

// benchEvents returns the events of the entries: with expected, those the
// insert is to write, each entry taken as new and its change as applied;
// otherwise those it wrote (read back by readInserted).
func benchEvents(entries []*entry, expected bool) []BenchEvent {
	var out []BenchEvent
	for _, e := range entries {
		if e.err != nil || e.replays != nil {
			continue
		}
		status, errText := e.out.Status, e.out.Error
		if expected && e.apply {
			status, errText = notify.StatusApplied, ""
		}
		if !expected && !e.inserted {
			continue
		}
		for _, ev := range e.Events {
			if ev.IfApplied && status != notify.StatusApplied {
				continue
			}
			data := ev.Data
			if ev.Type == notify.EventNotificationReceived {
				data = withOutcome(data, status, errText)
			}
			out = append(out, BenchEvent{AppID: e.AppID, NotifyID: e.NotifyID, Type: ev.Type, OccurredAt: ev.OccurredAt, Data: data})
		}
	}
	return out
}

// withOutcome is data with the status and error the insert adds to a
// notification.received's.
func withOutcome(data json.RawMessage, status notify.Status, errText string) json.RawMessage {
	tail, _ := json.Marshal(struct {
		Status notify.Status `json:"status"`
		Error  string        `json:"error"`
	}{status, errText})
	d := bytes.TrimSpace(data)
	if len(d) < 2 || d[len(d)-1] != '}' {
		return data
	}
	if bytes.Equal(d, []byte("{}")) {
		return tail
	}
	out := append(append(make([]byte, 0, len(d)+len(tail)), d[:len(d)-1]...), ',')
	return append(out, tail[1:]...)
}
