package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// Retry policy for transient conflicts. The budget (about a second in all) outlasts the short
// conflicts that PostgreSQL's serialization checks and other SQLite processes produce, while a
// conflict that persists is reported instead of hanging a request.
const (
	maxTxAttempts  = 10
	baseTxBackoff  = 2 * time.Millisecond
	maxTxBackoff   = 250 * time.Millisecond
	pgUniqueCode   = "23505" // unique_violation
	pgSerializeErr = "40001" // serialization_failure
	pgDeadlockErr  = "40P01" // deadlock_detected
)

// Tx is one write transaction, valid only inside the function given to WithTx.
type Tx struct {
	tx *sql.Tx
	db *DB
}

// WithTx runs fn in one write transaction and commits it, or rolls it back when fn returns an error
// or panics (the panic then continues).
//
// When the engine reports a transient conflict (SQLite SQLITE_BUSY or SQLITE_LOCKED, PostgreSQL
// serialization_failure or deadlock_detected) the whole transaction is rolled back and fn is run
// again, after a short jittered backoff, a bounded number of times and never past ctx. fn must
// therefore only touch the database and must return (or wrap with %w) the errors of its statements,
// so that conflicts can be recognised. fn must not call WithTx: on SQLite the single writer
// connection is already taken, so a nested call would wait forever. On PostgreSQL transactions run
// at the server's default isolation (READ COMMITTED unless configured otherwise).
func (db *DB) WithTx(ctx context.Context, fn func(tx *Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := db.runTx(ctx, fn)
		if err == nil || !isTransient(err) {
			return err
		}
		if attempt == maxTxAttempts {
			return fmt.Errorf("storage: transaction still conflicting after %d attempts: %w", attempt, err)
		}
		db.txRetries.Add(1)
		if werr := sleepCtx(ctx, txBackoff(attempt)); werr != nil {
			return fmt.Errorf("storage: waiting to retry transaction after %v: %w", err, werr)
		}
	}
}

func (db *DB) runTx(ctx context.Context, fn func(tx *Tx) error) error {
	sqlTx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: begin transaction: %w", err)
	}
	// Runs on error and on panic alike; after a commit it is a no-op returning sql.ErrTxDone.
	defer func() { _ = sqlTx.Rollback() }()
	if err := fn(&Tx{tx: sqlTx, db: db}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("storage: commit transaction: %w", err)
	}
	return nil
}

// txBackoff returns the wait before retry number attempt: exponential, capped, with jitter so that
// the conflicting transactions do not collide again in lockstep.
func txBackoff(attempt int) time.Duration {
	d := min(baseTxBackoff<<(attempt-1), maxTxBackoff)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Engine reports which engine the transaction runs on, for the rare statement that differs.
func (tx *Tx) Engine() Engine { return tx.db.engine }

// Exec runs a statement that returns no rows.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, tx.db.sql(query), args...)
}

// Query runs a query inside the transaction.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, tx.db.sql(query), args...)
}

// QueryRow runs a query that returns at most one row inside the transaction.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, tx.db.sql(query), args...)
}

// isTransient reports whether err is a conflict that goes away when the transaction is run again.
func isTransient(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == pgSerializeErr || pe.Code == pgDeadlockErr
	}
	return false
}

// IsUniqueViolation reports whether err is a unique-constraint (or primary-key) failure on either engine.
func IsUniqueViolation(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgUniqueCode
}
