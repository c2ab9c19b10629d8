package storage_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func createTable(t *testing.T, db *storage.DB, ddl string) {
	t.Helper()
	err := db.WithTx(t.Context(), func(tx *storage.Tx) error {
		_, err := tx.Exec(t.Context(), ddl)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
}

func countRows(t *testing.T, q storage.Querier, table string) int {
	t.Helper()
	var n int
	if err := q.QueryRow(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWithTx(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name      string
		fn        func(ctx context.Context, tx *storage.Tx) error
		wantErr   error
		wantPanic any
		wantRows  int
	}{
		{name: "commit", wantRows: 2, fn: func(ctx context.Context, tx *storage.Tx) error {
			for _, k := range []string{"a", "b"} {
				if _, err := tx.Exec(ctx, `INSERT INTO kv (k) VALUES ($1)`, k); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "rollback on error", wantErr: errBoom, fn: func(ctx context.Context, tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO kv (k) VALUES ('a')`); err != nil {
				return err
			}
			return fmt.Errorf("later step: %w", errBoom)
		}},
		{name: "rollback on panic", wantPanic: "kaboom", fn: func(ctx context.Context, tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO kv (k) VALUES ('a')`); err != nil {
				return err
			}
			panic("kaboom")
		}},
		{name: "rollback on failing statement", fn: func(ctx context.Context, tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO kv (k) VALUES ('a')`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO no_such_table (k) VALUES ('a')`)
			return err
		}},
	}
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		createTable(t, db, `CREATE TABLE kv (k TEXT PRIMARY KEY)`)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := t.Context()
				t.Cleanup(func() {
					_ = db.WithTx(context.Background(), func(tx *storage.Tx) error {
						_, err := tx.Exec(context.Background(), `DELETE FROM kv`)
						return err
					})
				})
				var err error
				var panicked any
				func() {
					defer func() { panicked = recover() }()
					err = db.WithTx(ctx, func(tx *storage.Tx) error { return tt.fn(ctx, tx) })
				}()
				if panicked != tt.wantPanic {
					t.Errorf("panic = %v, want %v", panicked, tt.wantPanic)
				}
				switch {
				case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				case tt.wantErr == nil && tt.wantRows > 0 && err != nil:
					t.Errorf("err = %v", err)
				case tt.wantRows == 0 && tt.wantPanic == nil && err == nil:
					t.Error("err = nil, want the failure")
				}
				if n := countRows(t, db, "kv"); n != tt.wantRows {
					t.Errorf("%d rows after the transaction, want %d", n, tt.wantRows)
				}
				// The writer is usable afterwards (on SQLite a leaked transaction would block it).
				err = db.WithTx(ctx, func(tx *storage.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO kv (k) VALUES ('after')`)
					return err
				})
				if err != nil {
					t.Errorf("next transaction: %v", err)
				}
			})
		}
	})
}

func TestIsUniqueViolation(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		createTable(t, db, `CREATE TABLE accounts (id TEXT PRIMARY KEY, email TEXT UNIQUE, name TEXT NOT NULL)`)
		insert := func(id, email string, name any) error {
			return db.WithTx(ctx, func(tx *storage.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO accounts (id, email, name) VALUES ($1, $2, $3)`, id, email, name)
				if err != nil {
					return fmt.Errorf("insert account %s: %w", id, err)
				}
				return nil
			})
		}
		if err := insert("@a", "a@x", "A"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name        string
			err         error
			wantUnique  bool
			wantFailure bool
		}{
			{"primary key", insert("@a", "other@x", "A"), true, true},
			{"unique column", insert("@b", "a@x", "B"), true, true},
			{"not null", insert("@c", "c@x", nil), false, true},
			{"success", insert("@d", "d@x", "D"), false, false},
			{"unrelated", errors.New("something else"), false, true},
		}
		for _, tt := range tests {
			if (tt.err != nil) != tt.wantFailure {
				t.Errorf("%s: err = %v", tt.name, tt.err)
			}
			if got := storage.IsUniqueViolation(tt.err); got != tt.wantUnique {
				t.Errorf("%s: IsUniqueViolation(%v) = %v, want %v", tt.name, tt.err, got, tt.wantUnique)
			}
		}
	})
}

// TestWithTxRetrySQLiteBusy provokes SQLITE_BUSY by holding the write lock from a second, raw
// connection, with a zero busy timeout so the engine reports the conflict instead of waiting.
func TestWithTxRetrySQLiteBusy(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "busy.db")
	db := openT(t, "sqlite://"+path+"?_busy_timeout=0", storage.Options{})
	createTable(t, db, `CREATE TABLE kv (k TEXT PRIMARY KEY)`)

	raw, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO kv (k) VALUES ('raw')`); err != nil {
		t.Fatal(err)
	}

	var attempts atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- db.WithTx(ctx, func(tx *storage.Tx) error {
			attempts.Add(1)
			_, err := tx.Exec(ctx, `INSERT INTO kv (k) VALUES ('ours')`)
			return err
		})
	}()
	retries := db.Stats().TxRetries
	waitFor(t, "a retried transaction", func() bool { return db.Stats().TxRetries > retries })
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WithTx after the lock was released: %v", err)
	}
	if n := countRows(t, db, "kv"); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
	if n := attempts.Load(); n != 1 {
		// BEGIN IMMEDIATE fails before fn runs, so fn ran only once the lock was free.
		t.Errorf("fn ran %d times, want 1", n)
	}
}

// TestWithTxRetrySQLiteExhausted checks that a lock held for longer than the retry budget is
// reported rather than retried forever.
func TestWithTxRetrySQLiteExhausted(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "busy.db")
	db := openT(t, "sqlite://"+path+"?_busy_timeout=0", storage.Options{})
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO stream_positions (stream, position) VALUES ('x', 1)`); err != nil {
		t.Fatal(err)
	}
	err = db.WithTx(ctx, func(tx *storage.Tx) error { return nil })
	if err == nil {
		t.Fatal("WithTx succeeded while another connection held the write lock")
	}
	if got := db.Stats().TxRetries; got != 9 {
		t.Errorf("TxRetries = %d, want 9", got)
	}

	// A cancelled context ends the waiting between attempts.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.WithTx(cctx, func(tx *storage.Tx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("WithTx with cancelled context: %v", err)
	}
}

// TestWithTxRetryPostgresSerialization runs two SERIALIZABLE transactions whose reads and writes
// overlap, so PostgreSQL aborts one with serialization_failure, which WithTx must retry.
func TestWithTxRetryPostgresSerialization(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		if db.Engine() != storage.EnginePostgres {
			t.Skip("serialization failures are a PostgreSQL behaviour; SQLite has one writer")
		}
		ctx := t.Context()
		createTable(t, db, `CREATE TABLE ledger (who TEXT NOT NULL)`)
		read := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
		other := map[string]string{"a": "b", "b": "a"}
		var attempts atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for who := range read {
			wg.Go(func() {
				first := true
				errs <- db.WithTx(ctx, func(tx *storage.Tx) error {
					attempts.Add(1)
					if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`); err != nil {
						return err
					}
					var n int
					if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM ledger`).Scan(&n); err != nil {
						return err
					}
					if first {
						// Both transactions read before either writes: a write skew.
						first = false
						close(read[who])
						select {
						case <-read[other[who]]:
						case <-time.After(20 * time.Second):
							return errors.New("the other transaction never read")
						}
					}
					_, err := tx.Exec(ctx, `INSERT INTO ledger (who) VALUES ($1)`, who)
					return err
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("WithTx: %v", err)
			}
		}
		if n := db.Stats().TxRetries; n < 1 {
			t.Errorf("TxRetries = %d, want at least 1", n)
		}
		if n := attempts.Load(); n < 3 {
			t.Errorf("%d attempts, want at least 3", n)
		}
		for _, who := range []string{"a", "b"} {
			var n int
			if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM ledger WHERE who = $1`, who).Scan(&n); err != nil || n != 1 {
				t.Errorf("rows of %s = %d (%v), want 1: a failed attempt left a partial write", who, n, err)
			}
		}
	})
}
