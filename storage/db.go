// Package storage is the database layer every component uses: it opens SQLite or PostgreSQL behind
// one API, runs write transactions with retries, applies versioned migrations and allocates
// positions of the append-only streams that components publish.
//
// All SQL is written with PostgreSQL placeholders ($1, $2 …); on SQLite they are rewritten to
// numbered parameters. Reads go through DB.Query and DB.QueryRow, writes through DB.WithTx. On SQLite
// a single writer connection serialises transactions and a pool of query-only connections serves
// reads, both on a WAL-mode file.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "github.com/mattn/go-sqlite3"    // registers the "sqlite3" database/sql driver
)

// Engine names a database engine.
type Engine string

// The engines Lattice runs on.
const (
	EngineSQLite   Engine = "sqlite"
	EnginePostgres Engine = "postgres"
)

// Options tunes the connection pools; the zero value suits a single server.
type Options struct {
	// MaxOpenConns is the PostgreSQL pool size (0 → 10), or for SQLite the read pool size (0 → 4).
	MaxOpenConns int
	// MaxIdleConns is how many idle connections are kept (0 → same as MaxOpenConns).
	MaxIdleConns int
	// ConnMaxLifetime closes connections older than this (0 → no limit).
	ConnMaxLifetime time.Duration
	// BaseDir is what relative SQLite paths are resolved against ("" → the process's working directory).
	BaseDir string
}

// Querier runs read queries; both *DB and *Tx satisfy it, so read code can run inside or outside a transaction.
type Querier interface {
	Engine() Engine
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*Tx)(nil)
)

// DB is an open database: a writer for transactions and a pool for reads.
type DB struct {
	engine Engine
	// writer runs every write transaction. On SQLite it holds exactly one connection, because SQLite
	// allows one writer at a time and letting several connections race for the lock only produces
	// "database is locked" errors; queueing on database/sql's pool is cheaper and fair.
	writer *sql.DB
	// reader serves Query and QueryRow. On SQLite its connections are query-only, so a read path that
	// writes by mistake fails loudly; on PostgreSQL it is the same pool as writer.
	reader    *sql.DB
	rewriter  *rewriter // nil on PostgreSQL, which understands $n itself
	txRetries atomic.Int64
}

// Stats is a snapshot of the connection pools and transaction retries, for metrics.
type Stats struct {
	Read, Write sql.DBStats
	// TxRetries counts transaction attempts that were retried after a transient conflict.
	TxRetries int64
}

// Open connects to the database named by dsn and applies the storage package's own migrations.
//
// Accepted forms: sqlite:///abs/path.db, sqlite://relative.db, file:path.db?param=value (go-sqlite3
// style), postgres://… and postgresql://…. Relative SQLite paths are resolved against opts.BaseDir and
// the parent directory is created when missing.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := parseDSN(dsn, opts.BaseDir)
	if err != nil {
		return nil, err
	}
	var db *DB
	switch cfg.engine {
	case EngineSQLite:
		db, err = openSQLite(ctx, cfg)
	case EnginePostgres:
		db, err = openPostgres(ctx, cfg, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "storage", storageMigrations); err != nil {
		_ = db.Close()
		return nil, err // already says "storage: migrate storage: …"
	}
	if db.engine == EngineSQLite {
		// The read pool is opened only once the writer has created the file, switched it to WAL and
		// migrated it: a query-only connection can neither create the file nor change its journal mode.
		db.reader, err = sql.Open("sqlite3", cfg.sqliteDSN(true))
		if err == nil {
			configurePool(db.reader, opts, 4)
			err = db.reader.PingContext(ctx)
		}
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("storage: open SQLite read pool on %s: %w", cfg.path, err)
		}
	}
	return db, nil
}

func openSQLite(ctx context.Context, cfg dsnConfig) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.path), 0o700); err != nil {
		return nil, fmt.Errorf("storage: create directory for %s: %w", cfg.path, err)
	}
	writer, err := sql.Open("sqlite3", cfg.sqliteDSN(false))
	if err != nil {
		return nil, fmt.Errorf("storage: open SQLite %s: %w", cfg.path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// Connecting switches a new file to WAL, which takes an exclusive lock; when several processes
	// open a new database at once, SQLite reports SQLITE_BUSY for that without waiting, so retry.
	for attempt := 1; ; attempt++ {
		err = writer.PingContext(ctx)
		if err == nil || !isTransient(err) || attempt == maxTxAttempts {
			break
		}
		if err = sleepCtx(ctx, txBackoff(attempt)); err != nil {
			break
		}
	}
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("storage: open SQLite %s: %w", cfg.path, err)
	}
	return &DB{engine: EngineSQLite, writer: writer, rewriter: &rewriter{}}, nil
}

func openPostgres(ctx context.Context, cfg dsnConfig, opts Options) (*DB, error) {
	pool, err := sql.Open("pgx", cfg.pgDSN)
	if err != nil {
		return nil, fmt.Errorf("storage: open PostgreSQL: %w", err)
	}
	configurePool(pool, opts, 10)
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("storage: connect to PostgreSQL: %w", err)
	}
	return &DB{engine: EnginePostgres, writer: pool, reader: pool}, nil
}

func configurePool(p *sql.DB, opts Options, defaultOpen int) {
	open := opts.MaxOpenConns
	if open <= 0 {
		open = defaultOpen
	}
	idle := opts.MaxIdleConns
	if idle <= 0 {
		idle = open
	}
	p.SetMaxOpenConns(open)
	p.SetMaxIdleConns(idle)
	p.SetConnMaxLifetime(opts.ConnMaxLifetime)
}

// Engine reports which engine the database runs on.
func (db *DB) Engine() Engine { return db.engine }

// Ping checks that the database can be reached.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("storage: ping: %w", err)
	}
	if db.reader != db.writer {
		if err := db.reader.PingContext(ctx); err != nil {
			return fmt.Errorf("storage: ping read pool: %w", err)
		}
	}
	return nil
}

// Close closes every connection; it must not be called while transactions are running.
func (db *DB) Close() error {
	var errs []error
	if db.writer != nil {
		errs = append(errs, db.writer.Close())
	}
	if db.reader != nil && db.reader != db.writer {
		errs = append(errs, db.reader.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// Stats returns pool statistics and the number of retried transactions.
func (db *DB) Stats() Stats {
	s := Stats{Write: db.writer.Stats(), TxRetries: db.txRetries.Load()}
	if db.reader != nil {
		s.Read = db.reader.Stats()
	}
	return s
}

// Query runs a read query on the read pool; it does not see the uncommitted writes of a running
// transaction, for which there is Tx.Query.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.reader.QueryContext(ctx, db.sql(query), args...)
}

// QueryRow runs a read query that returns at most one row on the read pool.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.reader.QueryRowContext(ctx, db.sql(query), args...)
}

// sql translates a query written with PostgreSQL placeholders for the engine at hand.
func (db *DB) sql(query string) string {
	if db.rewriter == nil {
		return query
	}
	return db.rewriter.rewrite(query)
}
