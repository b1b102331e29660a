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

// An outcome is written only while its claim stands: not after the claim
// expired (unknown), nor for an earlier attempt.
func TestDB_RecordRecipients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	b := newBatch(t, db, 2)
	claimed, err := db.ClaimRecipients(ctx, b.ID, 2)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("%+v %v", claimed, err)
	}
	time.Sleep(10 * time.Millisecond)
	expired, err := db.ExpireClaims(ctx, time.Millisecond)
	if err != nil || len(expired) != 1 || expired[0].N != 2 || expired[0].BatchID != b.ID || expired[0].AppID != testkit.AppID {
		t.Fatalf("%+v %v", expired, err)
	}
	sent := func(c notify.ClaimedRecipient) notify.RecipientOutcome {
		return notify.RecipientOutcome{BatchID: c.BatchID, Seq: c.Seq, Attempt: c.Attempt, Status: notify.RecipientSent, Code: "10000"}
	}
	if n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{sent(claimed[0]), sent(claimed[1])}); err != nil || n != 0 {
		t.Fatalf("late outcomes: %d recorded, %v", n, err)
	}
	if v, err := db.Batch(ctx, b.ID); err != nil || v.Counts.Unknown != 2 {
		t.Fatalf("%+v %v", v, err)
	}
	if n, err := db.RetryUnknown(ctx, b.ID); err != nil || n != 2 {
		t.Fatalf("%d %v", n, err)
	}
	again, err := db.ClaimRecipients(ctx, b.ID, 2)
	if err != nil || len(again) != 2 || again[0].Attempt != 2 {
		t.Fatalf("%+v %v", again, err)
	}
	retry := notify.RecipientOutcome{BatchID: b.ID, Seq: again[1].Seq, Attempt: 2, Status: notify.RecipientPending, NextAt: time.Now().Add(time.Hour), Error: "40005"}
	n, err := db.RecordRecipients(ctx, []notify.RecipientOutcome{sent(claimed[0]), sent(again[0]), retry})
	if err != nil || n != 2 {
		t.Fatalf("%d recorded (want the two of attempt 2), %v", n, err)
	}
	v, err := db.Batch(ctx, b.ID)
	if err != nil || v.Counts.Sent != 1 || v.Counts.Pending != 1 {
		t.Fatalf("%+v %v", v, err)
	}
	if got, err := db.ClaimRecipients(ctx, b.ID, 2); err != nil || len(got) != 0 {
		t.Fatalf("a retry claimed before it is due: %+v %v", got, err)
	}
	if done, err := db.FinishBatch(ctx, b.ID); err != nil || done {
		t.Fatalf("finished with a recipient pending: %v %v", done, err)
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
