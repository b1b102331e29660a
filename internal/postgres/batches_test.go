package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// newBatch stores a running batch of n recipients and returns it.
func newBatch(t *testing.T, db *postgres.DB, n int) *notify.TemplateBatch {
	t.Helper()
	b := &notify.TemplateBatch{AppID: testkit.AppID, RequestHash: "h", UserTemplateID: "t", Page: "p", Data: []byte(`{"keyword1":{"value":"x"}}`)}
	rs := make([]notify.NewRecipient, n)
	for i := range rs {
		rs[i].ToUserID = fmt.Sprintf("2088%012d", i+1)
	}
	if prior, err := db.CreateBatch(context.Background(), b, rs); err != nil || prior != nil {
		t.Fatalf("%+v %v", prior, err)
	}
	return b
}

// Replicas claiming at once get different recipients, never more than
// they ask for, and none of a batch that is not running.
func TestDB_ClaimRecipients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	const n, claimers, limit = 500, 8, 7
	b := newBatch(t, db, n)
	var (
		mu   sync.Mutex
		seen = map[int]int{}
		wg   sync.WaitGroup
	)
	for range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := db.ClaimRecipients(ctx, b.ID, limit)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) > limit {
					t.Errorf("claimed %d, asked for %d", len(got), limit)
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, c := range got {
					seen[c.Seq]++
					if c.Attempt != 1 || c.BatchID != b.ID || c.ToUserID == "" {
						t.Errorf("%+v", c)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d of %d claimed", len(seen), n)
	}
	for seq, k := range seen {
		if k != 1 {
			t.Fatalf("recipient %d claimed %d times", seq, k)
		}
	}
	paused := newBatch(t, db, 3)
	if err := db.PauseBatch(ctx, paused.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := db.ClaimRecipients(ctx, paused.ID, 10); err != nil || len(got) != 0 {
		t.Fatalf("a paused batch: %d claimed, %v", len(got), err)
	}
}

// An outcome is written while its claim stands; after the claim expired
// (unknown) only when it is known for sure (sent, failed, skipped), which
// replaces unknown, never the reverse; and never for an earlier attempt.
func TestDB_RecordRecipients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	b := newBatch(t, db, 3)
	claimed, err := db.ClaimRecipients(ctx, b.ID, 3)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("%+v %v", claimed, err)
	}
	time.Sleep(10 * time.Millisecond)
	expired, err := db.ExpireClaims(ctx, time.Millisecond)
	if err != nil || len(expired) != 1 || expired[0].N != 3 || expired[0].BatchID != b.ID || expired[0].AppID != testkit.AppID {
		t.Fatalf("%+v %v", expired, err)
	}
	outcome := func(c notify.ClaimedRecipient, attempt int, status string) notify.RecipientOutcome {
		o := notify.RecipientOutcome{BatchID: c.BatchID, Seq: c.Seq, Attempt: attempt, Status: status}
		switch status {
		case notify.RecipientSent:
			o.Code = "10000"
		case notify.RecipientPending:
			o.NextAt, o.Code, o.Error = time.Now().Add(time.Hour), "40005", "call limited"
		}
		return o
	}
	counts := func(want notify.BatchCounts) {
		t.Helper()
		v, err := db.Batch(ctx, b.ID)
		want.Total = 3
		if err != nil || v.Counts != want {
			t.Fatalf("%+v %v; want %+v", v.Counts, err, want)
		}
	}
	// Late: the one sent replaces unknown; a retry or an unknown does not.
	n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{outcome(claimed[0], 1, notify.RecipientSent),
		outcome(claimed[1], 1, notify.RecipientPending), outcome(claimed[2], 1, notify.RecipientUnknown)})
	if err != nil || n != 1 {
		t.Fatalf("late outcomes: %d recorded (want the sent one), %v", n, err)
	}
	counts(notify.BatchCounts{Sent: 1, Unknown: 2})
	// Never the reverse.
	if n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{outcome(claimed[0], 1, notify.RecipientUnknown)}); err != nil || n != 0 {
		t.Fatalf("unknown over sent: %d %v", n, err)
	}
	if n, err := db.RetryUnknown(ctx, b.ID); err != nil || n != 2 {
		t.Fatalf("%d %v", n, err)
	}
	// Queued again by retry-unknown, attempts kept: the late answer that
	// it was sent still counts, so that it is not sent twice.
	if n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{outcome(claimed[1], 1, notify.RecipientSent)}); err != nil || n != 1 {
		t.Fatalf("late sent after retry-unknown: %d %v", n, err)
	}
	counts(notify.BatchCounts{Sent: 2, Pending: 1})
	again, err := db.ClaimRecipients(ctx, b.ID, 3)
	if err != nil || len(again) != 1 || again[0].Attempt != 2 || again[0].Seq != claimed[2].Seq {
		t.Fatalf("%+v %v", again, err)
	}
	n, err = db.RecordRecipients(ctx, []notify.RecipientOutcome{outcome(claimed[2], 1, notify.RecipientSent), outcome(again[0], 2, notify.RecipientPending)})
	if err != nil || n != 1 {
		t.Fatalf("%d recorded (want the one of attempt 2), %v", n, err)
	}
	counts(notify.BatchCounts{Sent: 2, Pending: 1})
	if got, err := db.ClaimRecipients(ctx, b.ID, 2); err != nil || len(got) != 0 {
		t.Fatalf("a retry claimed before it is due: %+v %v", got, err)
	}
	if done, err := db.FinishBatch(ctx, b.ID); err != nil || done {
		t.Fatalf("finished with a recipient pending: %v %v", done, err)
	}
}

// A sent outcome that comes after the sweep made its claim unknown and
// finished the batch is recorded; the batch stays finished with its one
// event.
func TestDB_RecordRecipients_AfterFinish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	b := newBatch(t, db, 1)
	claimed, _ := db.ClaimRecipients(ctx, b.ID, 1)
	time.Sleep(10 * time.Millisecond)
	if _, err := db.ExpireClaims(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if done, err := db.FinishBatch(ctx, b.ID); err != nil || !done {
		t.Fatalf("%v %v", done, err)
	}
	o := notify.RecipientOutcome{BatchID: b.ID, Seq: claimed[0].Seq, Attempt: 1, Status: notify.RecipientSent, Code: "10000"}
	if n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{o}); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if done, err := db.FinishBatch(ctx, b.ID); err != nil || done {
		t.Fatalf("finished again: %v %v", done, err)
	}
	v, err := db.Batch(ctx, b.ID)
	if err != nil || v.Status != notify.BatchFinished || v.Counts.Sent != 1 || v.Counts.Unknown != 0 {
		t.Fatalf("%+v %v", v, err)
	}
	var events int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE notify_id = $1`, notify.BatchEventNotifyID(b.ID)).Scan(&events); err != nil || events != 1 {
		t.Fatalf("%d events, %v", events, err)
	}
	if n, err := db.RetryUnknown(ctx, b.ID); err != nil || n != 0 {
		t.Fatalf("retry-unknown of a recipient known sent: %d %v", n, err)
	}
}

// A call in flight when its batch was cancelled or stopped, that would
// leave its recipient pending (40005, not sent), cancels it: nothing is
// left pending in a batch that ended. In a paused batch it stays pending.
func TestDB_RecordRecipients_Ended(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	retry := func(c notify.ClaimedRecipient) notify.RecipientOutcome {
		return notify.RecipientOutcome{BatchID: c.BatchID, Seq: c.Seq, Attempt: c.Attempt, Status: notify.RecipientPending,
			NextAt: time.Now(), Code: "40005", Error: "call limited"}
	}
	check := func(t *testing.T, id int64, status, error string) {
		t.Helper()
		var st, e string
		var finished *time.Time
		if err := db.Pool.QueryRow(ctx, `SELECT status, error, finished_at FROM template_message_recipients WHERE batch_id = $1`, id).Scan(&st, &e, &finished); err != nil {
			t.Fatal(err)
		}
		if st != status || e != error || (finished == nil) != (status == notify.RecipientPending) {
			t.Fatalf("%s %q %v; want %s %q", st, e, finished, status, error)
		}
	}
	t.Run("OKCancelled", func(t *testing.T) {
		b := newBatch(t, db, 1)
		claimed, _ := db.ClaimRecipients(ctx, b.ID, 1)
		if err := db.CancelBatch(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{retry(claimed[0])}); err != nil || n != 1 {
			t.Fatalf("%d %v", n, err)
		}
		check(t, b.ID, notify.RecipientCancelled, "batch cancelled")
	})
	t.Run("OKStopped", func(t *testing.T) {
		b := newBatch(t, db, 1)
		claimed, _ := db.ClaimRecipients(ctx, b.ID, 1)
		if _, err := db.StopBatch(ctx, b.ID, notify.StopTemplateIllegal); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{retry(claimed[0])}); err != nil {
			t.Fatal(err)
		}
		check(t, b.ID, notify.RecipientCancelled, "batch stopped: template_illegal")
	})
	t.Run("OKPaused", func(t *testing.T) {
		b := newBatch(t, db, 1)
		claimed, _ := db.ClaimRecipients(ctx, b.ID, 1)
		if err := db.PauseBatch(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{retry(claimed[0])}); err != nil {
			t.Fatal(err)
		}
		check(t, b.ID, notify.RecipientPending, "call limited")
	})
}

// A cancel in progress (its transaction holds the batch) when an outcome
// that would leave its recipient pending is recorded: the record waits for
// the cancel, then cancels the recipient. Not parallel: the open
// transaction would hold back every other test's event feed meanwhile.
func TestDB_RecordRecipients_CancelInProgress(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	b := newBatch(t, db, 1)
	claimed, _ := db.ClaimRecipients(ctx, b.ID, 1)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM template_message_batches WHERE id = $1 FOR UPDATE`, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE template_message_batches SET status = 'cancelled', finished_at = now() WHERE id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{{BatchID: b.ID, Seq: claimed[0].Seq, Attempt: 1,
			Status: notify.RecipientPending, NextAt: time.Now(), Code: "40005", Error: "call limited"}})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("recorded while the cancel held the batch: %v", err)
	case <-time.After(150 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var status, why string
	if err := db.Pool.QueryRow(ctx, `SELECT status, error FROM template_message_recipients WHERE batch_id = $1`, b.ID).Scan(&status, &why); err != nil {
		t.Fatal(err)
	}
	if status != notify.RecipientCancelled || why != "batch cancelled" {
		t.Fatalf("%s %q", status, why)
	}
}

// The check before a pre-checked send: the batch's status, and the claim
// renewed only while the batch runs and the claim is the attempt's.
func TestDB_RenewClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	b := newBatch(t, db, 2)
	claimed, _ := db.ClaimRecipients(ctx, b.ID, 2)
	if status, held, err := db.RenewClaim(ctx, b.ID, claimed[0].Seq, 1); err != nil || status != notify.BatchRunning || !held {
		t.Fatalf("%s %v %v", status, held, err)
	}
	if status, held, err := db.RenewClaim(ctx, b.ID, claimed[0].Seq, 2); err != nil || status != notify.BatchRunning || held {
		t.Fatalf("another attempt: %s %v %v", status, held, err)
	}
	if err := db.PauseBatch(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if status, held, err := db.RenewClaim(ctx, b.ID, claimed[1].Seq, 1); err != nil || status != notify.BatchPaused || held {
		t.Fatalf("paused: %s %v %v", status, held, err)
	}
	if err := db.CancelBatch(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if status, held, err := db.RenewClaim(ctx, b.ID, claimed[1].Seq, 1); err != nil || status != notify.BatchCancelled || held {
		t.Fatalf("cancelled: %s %v %v", status, held, err)
	}
	if status, held, err := db.RenewClaim(ctx, 999999, 1, 1); err != nil || status != "" || held {
		t.Fatalf("no batch: %s %v %v", status, held, err)
	}
}

// The sender pauses a running batch with its reason; resume clears it.
func TestDB_PauseBatchFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	b := newBatch(t, db, 1)
	if paused, err := db.PauseBatchFor(ctx, b.ID, notify.PauseTokenExpired); err != nil || !paused {
		t.Fatalf("%v %v", paused, err)
	}
	if paused, err := db.PauseBatchFor(ctx, b.ID, notify.PauseUnverifiedRefusal); err != nil || paused {
		t.Fatalf("paused again: %v %v", paused, err)
	}
	if v, err := db.Batch(ctx, b.ID); err != nil || v.Status != notify.BatchPaused || v.StopReason != notify.PauseTokenExpired {
		t.Fatalf("%+v %v", v, err)
	}
	if err := db.ResumeBatch(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Batch(ctx, b.ID); err != nil || v.Status != notify.BatchRunning || v.StopReason != "" {
		t.Fatalf("%+v %v", v, err)
	}
	if err := db.CancelBatch(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if paused, err := db.PauseBatchFor(ctx, b.ID, notify.PauseTokenExpired); err != nil || paused {
		t.Fatalf("a cancelled batch paused: %v %v", paused, err)
	}
}

// A batch ends once, with one event, whoever ends it how often.
func TestDB_FinishBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	events := func(id int64) (n int) {
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE notify_id = $1`, notify.BatchEventNotifyID(id)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	b := newBatch(t, db, 1)
	claimed, _ := db.ClaimRecipients(ctx, b.ID, 1)
	if _, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{{BatchID: b.ID, Seq: claimed[0].Seq, Attempt: 1, Status: notify.RecipientSent}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	finished := make(chan bool, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, err := db.FinishBatch(ctx, b.ID)
			if err != nil {
				t.Error(err)
			}
			finished <- done
		}()
	}
	wg.Wait()
	close(finished)
	n := 0
	for done := range finished {
		if done {
			n++
		}
	}
	if n != 1 || events(b.ID) != 1 {
		t.Fatalf("finished %d times, %d events", n, events(b.ID))
	}
	if err := db.CancelBatch(ctx, b.ID); notify.ErrorCode(err) != notify.ECONFLICT {
		t.Fatalf("cancel a finished batch: %v", err)
	}
	if stopped, err := db.StopBatch(ctx, b.ID, notify.StopTemplateIllegal); err != nil || stopped || events(b.ID) != 1 {
		t.Fatalf("stop a finished batch: %v %v", stopped, err)
	}
	c := newBatch(t, db, 3)
	if err := db.CancelBatch(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.CancelBatch(ctx, c.ID); err != nil || events(c.ID) != 1 {
		t.Fatalf("cancel again: %v, %d events", err, events(c.ID))
	}
	if v, err := db.Batch(ctx, c.ID); err != nil || v.Counts.Cancelled != 3 || v.Status != notify.BatchCancelled || v.FinishedAt == nil {
		t.Fatalf("%+v %v", v, err)
	}
	if _, err := db.Batch(ctx, 999999); notify.ErrorCode(err) != notify.ENOTFOUND {
		t.Fatalf("%v", err)
	}
}
