package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
)

func TestDB_TakeTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		// A new bucket starts full: the burst, and no more.
		got, wait, err := db.TakeTokens(ctx, "openapi:a", 10, 5, 3)
		if err != nil || got != 3 || wait != 0 {
			t.Fatalf("first take: %d %v %v, want 3 0 nil", got, wait, err)
		}
		got, wait, err = db.TakeTokens(ctx, "openapi:a", 10, 5, 10)
		if err != nil || got != 2 || wait <= 0 || wait > 100*time.Millisecond {
			t.Fatalf("second take: %d %v %v, want 2, a wait of at most 100ms", got, wait, err)
		}
		// Another name is another bucket.
		if got, _, _ := db.TakeTokens(ctx, "openapi:b", 10, 5, 5); got != 5 {
			t.Fatalf("other bucket granted %d, want 5", got)
		}
		// It refills at the rate: after the wait, one token is there.
		time.Sleep(wait + 20*time.Millisecond)
		if got, _, _ := db.TakeTokens(ctx, "openapi:a", 10, 5, 10); got < 1 || got > 2 {
			t.Fatalf("after the wait granted %d, want 1 (or 2 on a slow machine)", got)
		}
	})

	t.Run("Unlimited", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		for range 3 {
			if got, wait, err := db.TakeTokens(ctx, "openapi:a", 0, 1, 1000); got != 1000 || wait != 0 || err != nil {
				t.Fatalf("unlimited: %d %v %v", got, wait, err)
			}
		}
	})

	t.Run("Return", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		if got, _, _ := db.TakeTokens(ctx, "openapi:a", 0.001, 4, 4); got != 4 {
			t.Fatalf("granted %d, want 4", got)
		}
		if err := db.ReturnTokens(ctx, "openapi:a", 10); err != nil {
			t.Fatal(err)
		}
		// Given back up to the burst, not beyond.
		if got, _, _ := db.TakeTokens(ctx, "openapi:a", 0.001, 4, 10); got != 4 {
			t.Fatalf("after returning granted %d, want 4 (the burst)", got)
		}
		if err := db.ReturnTokens(ctx, "openapi:never", 1); err != nil {
			t.Fatal(err)
		}
	})

	// Takers on two pools ("replicas") share one budget: over a window they
	// are granted at most burst + rate × elapsed between them.
	t.Run("SharedByReplicas", func(t *testing.T) {
		t.Parallel()
		url := pgtest.NewSchema(t)
		var dbs []*postgres.DB
		for range 2 {
			db, err := postgres.Open(ctx, postgres.Config{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			dbs = append(dbs, db)
		}
		if err := dbs[0].Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		const rate, burst = 40.0, 4.0
		var granted atomic.Int64
		start := time.Now()
		deadline := start.Add(500 * time.Millisecond)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					got, wait, err := dbs[i%2].TakeTokens(ctx, "openapi:shared", rate, burst, 2)
					if err != nil {
						t.Error(err)
						return
					}
					granted.Add(int64(got))
					time.Sleep(wait)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		if max := burst + rate*elapsed; float64(granted.Load()) > max {
			t.Fatalf("granted %d in %.2fs, more than burst + rate × elapsed = %.1f", granted.Load(), elapsed, max)
		}
		if min := rate * 0.5 * 0.5; float64(granted.Load()) < min {
			t.Fatalf("granted only %d in %.2fs", granted.Load(), elapsed)
		}
	})
}
