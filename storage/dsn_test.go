package storage

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDSN(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dsn, base string
		engine          Engine
		path            string // SQLite only
		params          url.Values
	}{
		{name: "sqlite absolute", dsn: "sqlite:///var/lib/lattice/db.sqlite", base: "/ignored",
			engine: EngineSQLite, path: "/var/lib/lattice/db.sqlite"},
		{name: "sqlite relative to base", dsn: "sqlite://data/lattice.db", base: "/srv",
			engine: EngineSQLite, path: "/srv/data/lattice.db"},
		{name: "sqlite relative to cwd", dsn: "sqlite://lattice.db",
			engine: EngineSQLite, path: filepath.Join(cwd, "lattice.db")},
		{name: "sqlite relative base dir", dsn: "sqlite://x.db", base: "rel",
			engine: EngineSQLite, path: filepath.Join(cwd, "rel", "x.db")},
		{name: "sqlite dot dot", dsn: "sqlite://../x.db", base: "/srv/a",
			engine: EngineSQLite, path: "/srv/x.db"},
		{name: "sqlite params", dsn: "sqlite:///a.db?_busy_timeout=50", engine: EngineSQLite, path: "/a.db",
			params: url.Values{"_busy_timeout": {"50"}}},
		{name: "sqlite scheme case", dsn: "SQLite:///a.db", engine: EngineSQLite, path: "/a.db"},
		{name: "file relative", dsn: "file:lattice.db?cache=private&_synchronous=FULL", base: "/srv",
			engine: EngineSQLite, path: "/srv/lattice.db",
			params: url.Values{"cache": {"private"}, "_synchronous": {"FULL"}}},
		{name: "file absolute", dsn: "file:/tmp/x.db", base: "/srv", engine: EngineSQLite, path: "/tmp/x.db"},
		{name: "file empty authority", dsn: "file:///tmp/x.db", engine: EngineSQLite, path: "/tmp/x.db"},
		{name: "file localhost", dsn: "file://localhost/tmp/x.db", engine: EngineSQLite, path: "/tmp/x.db"},
		{name: "file percent escapes and fragment", dsn: "file:/tmp/a%20b%3F.db#frag", engine: EngineSQLite,
			path: "/tmp/a b?.db"},
		{name: "postgres", dsn: "postgres://u:p@h:5432/db?sslmode=disable", engine: EnginePostgres},
		{name: "postgresql", dsn: "postgresql://h/db", engine: EnginePostgres},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseDSN(tt.dsn, tt.base)
			if err != nil {
				t.Fatalf("parseDSN(%q): %v", tt.dsn, err)
			}
			if cfg.engine != tt.engine {
				t.Errorf("engine = %s, want %s", cfg.engine, tt.engine)
			}
			if tt.engine == EnginePostgres {
				if cfg.pgDSN != tt.dsn {
					t.Errorf("pgDSN = %q, want it unchanged", cfg.pgDSN)
				}
				return
			}
			if cfg.path != tt.path {
				t.Errorf("path = %q, want %q", cfg.path, tt.path)
			}
			for k, v := range tt.params {
				if got := cfg.params.Get(k); got != v[0] {
					t.Errorf("param %s = %q, want %q", k, got, v[0])
				}
			}
		})
	}
}

func TestParseDSNErrors(t *testing.T) {
	tests := []struct{ name, dsn, want string }{
		{"empty", "", "unsupported"},
		{"mysql", "mysql://user:hunter2@host/db", "unsupported"},
		{"bare path", "/var/lib/lattice.db", "unsupported"},
		{"sqlite without slashes", "sqlite:x.db", "unsupported"},
		{"sqlite no path", "sqlite://", "no file path"},
		{"file no path", "file:", "no file path"},
		{"file remote host", "file://server/x.db", "only local files"},
		{"file bad escape", "file:/tmp/a%zz.db", "URI path"},
		{"bad params", "sqlite:///a.db?x=%zz", "parameters"},
		{"memory", "file::memory:", "in-memory"},
		{"memory mode", "file:x.db?mode=memory", "in-memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDSN(tt.dsn, "/srv")
			if err == nil {
				t.Fatalf("parseDSN(%q) succeeded, want error", tt.dsn)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q leaks the password", err)
			}
			if tt.want == "unsupported" && !strings.Contains(err.Error(), "postgres://") {
				t.Errorf("error %q does not name the accepted forms", err)
			}
		})
	}
}

func TestSQLiteDSN(t *testing.T) {
	cfg, err := parseDSN("file:/tmp/odd%25dir/a%23b.db?_journal_mode=DELETE&_query_only=1&cache=private", "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		readOnly bool
		want     map[string]string // "" means absent
	}{
		{false, map[string]string{"_journal_mode": "WAL", "_txlock": "immediate", "_foreign_keys": "1",
			"_busy_timeout": "10000", "_query_only": "", "cache": "private", "_stmt_cache_size": "64"}},
		{true, map[string]string{"_journal_mode": "", "_txlock": "", "_foreign_keys": "1",
			"_busy_timeout": "10000", "_query_only": "1", "cache": "private"}},
	}
	for _, tt := range tests {
		dsn := cfg.sqliteDSN(tt.readOnly)
		path, query, _ := strings.Cut(dsn, "?")
		if path != "file:/tmp/odd%25dir/a%23b.db" {
			t.Errorf("readOnly=%v: path part %q not escaped", tt.readOnly, path)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tt.want {
			if got := q.Get(k); got != v {
				t.Errorf("readOnly=%v: %s = %q, want %q", tt.readOnly, k, got, v)
			}
		}
	}
	cfg.params.Set("_busy_timeout", "5")
	if q, _ := url.ParseQuery(strings.SplitN(cfg.sqliteDSN(false), "?", 2)[1]); q.Get("_busy_timeout") != "5" {
		t.Errorf("caller's _busy_timeout not kept: %q", q.Get("_busy_timeout"))
	}
}
