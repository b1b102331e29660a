// Package postgres is the gateway's storage: the connection pool, the
// embedded migrations, the inbox transaction that records a decided
// notification and applies its change, the conditional upserts behind
// business state, and the reads of the ops API. It decides nothing: what a
// notification does is the application's (notify.Registry.Decide). Every guarantee that must hold across replicas (one row
// per notification, newest state wins) is enforced here, in SQL.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/migrations"
)

// DB is the gateway's database.
type DB struct {
	Pool *pgxpool.Pool
	now  func() time.Time
}

// Config is what Open needs.
type Config struct {
	URL      string
	MaxConns int32 // 0: 8
}

// Open returns a DB with a connection pool for cfg.URL. It does not wait for
// the database to be reachable: the pool connects on demand and recovers by
// itself after an outage. It returns an error when the URL is unusable.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("store: unable to parse DATABASE_URL: %w", err)
	}
	pc.MaxConns = 8 // group commit's flushers, plus the ops API and probes
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pc.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: unable to create the pool: %w", err)
	}
	return &DB{Pool: pool, now: time.Now}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Migrate applies the embedded migrations, holding a Postgres advisory lock
// so that replicas starting at once apply them once.
func (db *DB) Migrate(ctx context.Context) error {
	p, sqlDB, err := db.provider()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: unable to migrate: %w", err)
	}
	return nil
}

// Ready returns nil when the database answers and every migration is
// applied.
func (db *DB) Ready(ctx context.Context) error {
	if err := db.Pool.Ping(ctx); err != nil {
		return unavailable(err)
	}
	p, sqlDB, err := db.provider()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return unavailable(err)
	}
	if pending {
		return errors.New("store: migrations are pending")
	}
	return nil
}

func (db *DB) provider() (*goose.Provider, *sql.DB, error) {
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		sqlDB.Close()
		return nil, nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("store: unable to load migrations: %w", err)
	}
	return p, sqlDB, nil
}

// unavailable wraps a database error as an EUNAVAILABLE *notify.Error when
// retrying later may help (connection lost, server shutting down, deadlock,
// serialization failure, out of resources), and as an internal error
// otherwise.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	if retryable(err) {
		return &notify.Error{Code: notify.EUNAVAILABLE, Reason: "database_unavailable", Message: "database unavailable: " + err.Error()}
	}
	return fmt.Errorf("store: %w", err)
}

// conflict reports whether err is a deadlock or a serialization failure,
// which the same transaction tried again is likely to pass; or a batch
// that raced another over one signed content (the unique content_digest),
// which tried again finds it stored and takes it as a replay.
func conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001" ||
		pgErr.Code == "23505" && pgErr.ConstraintName == "notifications_content_digest_key")
}

// retryable reports whether err is a failure that a later try may not
// meet: a lost or refused connection, a server shutting down or out of
// resources, a deadlock or serialization failure, a timeout. Anything else
// (a bad value, a bug) is not.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "40", "53", "57", "58":
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool") || strings.Contains(msg, "conn busy")
}
