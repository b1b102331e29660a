// Package pgtest gives each test a real, empty, migrated Postgres schema of
// its own, on the server that `make test` starts (DATABASE_URL), and drops
// it when the test ends. Tests using it may run in parallel.
//
// It is the Postgres part of the tests' kit, internal/testkit, which holds
// every other fixture (apps, keys, notifications, the registry and the
// token sealer) and imports no database.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/postgres"
)

// URL returns the test server's URL, failing the test when there is none.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		url = os.Getenv("DATABASE_URL")
	}
	if url == "" {
		t.Fatal("pgtest: no TEST_DATABASE_URL or DATABASE_URL: run the tests with `make test`, which starts Postgres")
	}
	return url
}

// NewSchema creates a fresh schema and returns a URL whose connections use
// it; the schema is dropped when t ends.
func NewSchema(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	base := URL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// New returns a migrated DB on a fresh schema.
func New(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: NewSchema(t), MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return db
}
