package storage_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func openT(t *testing.T, dsn string, opts storage.Options) *storage.DB {
	t.Helper()
	db, err := storage.Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestOpenSQLitePaths(t *testing.T) {
	base := t.TempDir()
	tests := []struct{ name, dsn, file string }{
		{"sqlite relative with new parents", "sqlite://a/b/rel.db", filepath.Join(base, "a", "b", "rel.db")},
		{"sqlite absolute", "sqlite://" + filepath.Join(base, "abs", "x.db"), filepath.Join(base, "abs", "x.db")},
		{"file relative with params", "file:c/f.db?cache=private&_busy_timeout=1234", filepath.Join(base, "c", "f.db")},
		{"file odd characters", "file:odd%25%23dir/y.db", filepath.Join(base, "odd%#dir", "y.db")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openT(t, tt.dsn, storage.Options{BaseDir: base})
			if db.Engine() != storage.EngineSQLite {
				t.Errorf("Engine() = %s", db.Engine())
			}
			if _, err := os.Stat(tt.file); err != nil {
				t.Errorf("database file: %v", err)
			}
			if err := db.Ping(t.Context()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

// TestSQLitePragmas checks that the settings the package relies on are in force on both pools.
func TestSQLitePragmas(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, "sqlite://"+filepath.Join(dir, "p.db"), storage.Options{})
	ctx := t.Context()
	read := map[string]string{}
	for _, p := range []string{"journal_mode", "busy_timeout", "foreign_keys", "query_only"} {
		var v string
		if err := db.QueryRow(ctx, "PRAGMA "+p).Scan(&v); err != nil {
			t.Fatalf("read pool PRAGMA %s: %v", p, err)
		}
		read[p] = v
	}
	write := map[string]string{}
	err := db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, p := range []string{"journal_mode", "busy_timeout", "foreign_keys", "query_only"} {
			var v string
			if err := tx.QueryRow(ctx, "PRAGMA "+p).Scan(&v); err != nil {
				return err
			}
			write[p] = v
		}
		return nil
	})
	if err != nil {
		t.Fatalf("writer pragmas: %v", err)
	}
	want := map[string][2]string{ // read pool, writer
		"journal_mode": {"wal", "wal"},
		"busy_timeout": {"10000", "10000"},
		"foreign_keys": {"1", "1"},
		"query_only":   {"1", "0"},
	}
	for p, w := range want {
		if read[p] != w[0] || write[p] != w[1] {
			t.Errorf("PRAGMA %s: read pool %q, writer %q; want %q, %q", p, read[p], write[p], w[0], w[1])
		}
	}

	// The read pool refuses writes.
	rows, err := db.Query(ctx, "INSERT INTO stream_positions (stream, position) VALUES ('x', 1)")
	if err == nil {
		rows.Close()
		t.Error("read pool accepted an INSERT")
	}
	// Foreign keys are enforced, not just switched on.
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE parent (id INTEGER PRIMARY KEY)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE child (p INTEGER REFERENCES parent(id))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO child (p) VALUES (42)`)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "FOREIGN KEY") {
		t.Errorf("insert violating a foreign key: err = %v, want a FOREIGN KEY failure", err)
	}
}

func TestSQLiteCallerBusyTimeout(t *testing.T) {
	db := openT(t, "file:"+filepath.Join(t.TempDir(), "b.db")+"?_busy_timeout=1234", storage.Options{})
	var v int
	if err := db.QueryRow(t.Context(), "PRAGMA busy_timeout").Scan(&v); err != nil || v != 1234 {
		t.Errorf("busy_timeout = %d (%v), want the caller's 1234", v, err)
	}
}

func TestSQLiteReopen(t *testing.T) {
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "r.db")
	ctx := t.Context()
	db, err := storage.Open(ctx, dsn, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.NextStreamPosition(ctx, "s")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, dsn, storage.Options{})
	if pos, err := db.StreamPosition(ctx, "s"); err != nil || pos != 1 {
		t.Errorf("after reopen StreamPosition = %d, %v; want 1", pos, err)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct{ name, dsn, want string }{
		{"unknown scheme", "mysql://root:hunter2@db/lattice", "postgres://"},
		{"postgres unreachable", "postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=5", "connect to PostgreSQL"},
		{"sqlite parent is a file", "sqlite://" + filepath.Join(os.Args[0], "x.db"), "create directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := storage.Open(t.Context(), tt.dsn, storage.Options{})
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q) succeeded", tt.dsn)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q leaks a password", err)
			}
		})
	}
}

func TestOpenEngines(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		if got := string(db.Engine()); !strings.HasSuffix(t.Name(), "/"+got) {
			t.Errorf("Engine() = %s in subtest %s", got, t.Name())
		}
		if err := db.Ping(t.Context()); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if pos, err := db.StreamPosition(t.Context(), "never-used"); err != nil || pos != 0 {
			t.Errorf("StreamPosition of unused stream = %d, %v; want 0", pos, err)
		}
		if s := db.Stats(); s.Write.MaxOpenConnections == 0 || s.Read.MaxOpenConnections == 0 {
			t.Errorf("Stats() = %+v, want both pools", s)
		}
	})
}

// TestPlaceholders runs rewritten queries on each engine: more than nine parameters, reuse of one
// parameter and a '$1' inside a string literal.
func TestPlaceholders(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TABLE wide (a TEXT, b TEXT, c TEXT, d TEXT, e TEXT, f TEXT,
				g TEXT, h TEXT, i TEXT, j TEXT, k TEXT, l TEXT)`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO wide VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")
			return err
		})
		if err != nil {
			t.Fatalf("insert 12 parameters: %v", err)
		}
		var lit, a, l string
		err = db.QueryRow(ctx, `SELECT '$1 and $2', a, l FROM wide WHERE (a = $1 OR b = $1) AND l = $2 AND "k" <> '$2'`,
			"1", "12").Scan(&lit, &a, &l)
		if err != nil {
			t.Fatalf("query with reused parameter: %v", err)
		}
		if lit != "$1 and $2" || a != "1" || l != "12" {
			t.Errorf("got %q, %q, %q", lit, a, l)
		}
	})
}
