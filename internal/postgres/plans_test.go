package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
)

// TestPlans_EmptyTables checks that the look-ups by key of the intake path
// are planned as index probes even when their generic plan is made on empty
// tables: Postgres keeps a prepared statement's generic plan until the next
// ANALYZE, and a sequential scan planned on an empty inbox would be kept as
// it grows.
func TestPlans_EmptyTables(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "RESET plan_cache_mode")
	for name, sql := range map[string]string{
		"stored": postgres.StoredNotificationsSQL,
		"insert": postgres.InsertNotificationsSQL,
		"fanout": postgres.FanOutSQL,
		"feed":   postgres.EventsPageSQL,
		"claim":  postgres.ClaimRecipientsSQL,
		"record": postgres.RecordRecipientsSQL,
	} {
		t.Run(name, func(t *testing.T) {
			sd, err := conn.Conn().Prepare(ctx, "plan_"+name, sql)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Exec(context.Background(), "DEALLOCATE plan_"+name)
			args := strings.Repeat(", NULL", len(sd.ParamOIDs))[2:]
			rows, err := conn.Query(ctx, "EXPLAIN EXECUTE plan_"+name+"("+args+")")
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			// (A hash join of the batch's own rows, such as the events'
			// with the inbox insert's RETURNING, scans no table.)
			if strings.Contains(text, "Seq Scan") || strings.Contains(text, "Hash Semi") || strings.Contains(text, "Hash Anti") {
				t.Fatalf("generic plan on empty tables scans a table:\n%s", text)
			}
		})
	}
}

// TestPlans_RecordAttempts checks that recording a batch of attempts finds
// each delivery by its id even when the statistics know of fewer
// deliveries, or fewer pending ones, than there are: a backlog that grew
// since the last ANALYZE (an endpoint back after an outage, a replay).
// Planned as a scan of the table, or of every pending delivery through
// webhook_deliveries_due_idx, every batch would read the whole backlog,
// and a drain would take time growing with the square of the backlog.
func TestPlans_RecordAttempts(t *testing.T) {
	t.Parallel()
	for name, delivered := range map[string]int{"FewRows": 0, "FewPending": 20000} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			planRecordAttempts(t, delivered)
		})
	}
}

// planRecordAttempts makes delivered deliveries and 20 pending, analyzes
// them, makes 20000 more pending, and checks the plans of recording 64
// attempts.
func planRecordAttempts(t *testing.T, delivered int) {
	db := pgtest.New(t)
	ctx := context.Background()
	var endpoint int64
	err := db.Pool.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, secret) VALUES ('http://127.0.0.1/', 'whsec_AAAA') RETURNING id`).Scan(&endpoint)
	if err != nil {
		t.Fatal(err)
	}
	deliveries := func(n int, status string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, `
			WITH e AS (
				INSERT INTO events (app_id, notify_id, type, data)
				SELECT 'app', 'plan-' || $3 || '-' || g || '-' || $2::int, 'notification.received', '{}' FROM generate_series(1, $2::int) g
				RETURNING id
			)
			INSERT INTO webhook_deliveries (endpoint_id, event_id, expires_at, status) SELECT $1, id, now() + interval '1 day', $3 FROM e`,
			endpoint, n, status)
		if err != nil {
			t.Fatal(err)
		}
	}
	deliveries(delivered, "delivered")
	deliveries(20, "pending")
	for _, q := range []string{"ALTER TABLE webhook_deliveries SET (autovacuum_enabled = false)", "ANALYZE webhook_deliveries"} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	deliveries(20000, "pending")

	rows, err := db.Pool.Query(ctx, `SELECT id FROM webhook_deliveries ORDER BY id DESC LIMIT 64`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	n := len(ids)
	ints, texts, flags, times := make([]int32, n), make([]string, n), make([]bool, n), make([]time.Time, n)
	for i := range n {
		ints[i], times[i], flags[i] = 1, time.Now(), true
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	explain := func(t *testing.T, sql string, args ...any) string {
		t.Helper()
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(plan, "\n")
	}
	check := func(t *testing.T, plan string) {
		t.Helper()
		if strings.Contains(plan, "webhook_deliveries_due_idx") || strings.Contains(plan, "Seq Scan on webhook_deliveries") {
			t.Fatalf("recording %d attempts reads the backlog:\n%s", n, plan)
		}
	}
	t.Run("Custom", func(t *testing.T) {
		check(t, explain(t, "EXPLAIN "+postgres.RecordAttemptsSQL, ids, ints, times, ints, ints, texts, texts, flags, times, make([]bool, n)))
	})
	t.Run("Generic", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(context.Background(), "RESET plan_cache_mode")
		if _, err := conn.Exec(ctx, "PREPARE plan_record AS "+postgres.RecordAttemptsSQL); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(context.Background(), "DEALLOCATE plan_record")
		check(t, explain(t, "EXPLAIN EXECUTE plan_record(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"))
	})
}
