package postgres_test

import (
	"context"
	"strings"
	"testing"

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
