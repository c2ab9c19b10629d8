package storage

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sqliteBusyTimeout is how long a SQLite connection waits for a lock before reporting SQLITE_BUSY.
// Other processes (backups, the sqlite3 shell) may hold the lock briefly; ten seconds rides that out.
const sqliteBusyTimeout = 10 * time.Second

// sqliteStmtCacheSize is how many prepared statements each SQLite connection keeps. The project runs
// a fixed set of queries; re-preparing them dominated the cost of a small write transaction.
const sqliteStmtCacheSize = 64

const acceptedForms = "sqlite:///abs/path.db, sqlite://relative.db, file:path.db?param=value, postgres://… or postgresql://…"

// dsnConfig is a parsed DSN.
type dsnConfig struct {
	engine Engine
	pgDSN  string     // PostgreSQL: the DSN as given, for pgx
	path   string     // SQLite: absolute, cleaned file path
	params url.Values // SQLite: the caller's query parameters
}

// parseDSN recognises the accepted DSN forms and resolves relative SQLite paths against baseDir.
func parseDSN(dsn, baseDir string) (dsnConfig, error) {
	switch {
	case hasPrefixFold(dsn, "postgres://"), hasPrefixFold(dsn, "postgresql://"):
		return dsnConfig{engine: EnginePostgres, pgDSN: dsn}, nil
	case hasPrefixFold(dsn, "sqlite://"):
		// The path is taken literally (no percent-decoding) so that it can be pasted from a shell.
		path, query, _ := strings.Cut(dsn[len("sqlite://"):], "?")
		return sqliteConfig(path, query, baseDir)
	case hasPrefixFold(dsn, "file:"):
		// An SQLite URI (https://sqlite.org/uri.html): an optional empty or "localhost" authority,
		// a percent-encoded path, query parameters and an ignored fragment.
		rest, _, _ := strings.Cut(dsn[len("file:"):], "#")
		rest, query, _ := strings.Cut(rest, "?")
		if after, ok := strings.CutPrefix(rest, "//"); ok {
			authority, path, _ := strings.Cut(after, "/")
			if authority != "" && authority != "localhost" {
				return dsnConfig{}, fmt.Errorf("storage: SQLite URI names host %q; only local files are supported", authority)
			}
			rest = "/" + path
		}
		path, err := url.PathUnescape(rest)
		if err != nil {
			return dsnConfig{}, fmt.Errorf("storage: SQLite URI path: %w", err)
		}
		return sqliteConfig(path, query, baseDir)
	}
	// Only the scheme is echoed: the rest of a DSN may hold a password.
	scheme, _, found := strings.Cut(dsn, ":")
	if !found || len(scheme) > 20 {
		scheme = "(none)"
	}
	return dsnConfig{}, fmt.Errorf("storage: unsupported database DSN scheme %q: want %s", scheme, acceptedForms)
}

func sqliteConfig(path, query, baseDir string) (dsnConfig, error) {
	params, err := url.ParseQuery(query)
	if err != nil {
		return dsnConfig{}, fmt.Errorf("storage: SQLite DSN parameters: %w", err)
	}
	if path == "" {
		return dsnConfig{}, fmt.Errorf("storage: SQLite DSN has no file path: want %s", acceptedForms)
	}
	// The writer and the read pool are separate connections, so they must share a file.
	if path == ":memory:" || params.Get("mode") == "memory" {
		return dsnConfig{}, fmt.Errorf("storage: in-memory SQLite databases are not supported; name a file")
	}
	if !filepath.IsAbs(path) {
		if baseDir == "" {
			if baseDir, err = os.Getwd(); err != nil {
				return dsnConfig{}, fmt.Errorf("storage: resolve SQLite path %s: %w", path, err)
			}
		}
		path = filepath.Join(baseDir, path)
	}
	path, err = filepath.Abs(path)
	if err != nil {
		return dsnConfig{}, fmt.Errorf("storage: resolve SQLite path %s: %w", path, err)
	}
	return dsnConfig{engine: EngineSQLite, path: path, params: params}, nil
}

// sqliteDSN builds the go-sqlite3 DSN of the writer or of a read-pool connection. The caller's
// parameters are kept, except those this package relies on, which it sets itself; a caller's
// _busy_timeout and _stmt_cache_size are honoured.
func (c dsnConfig) sqliteDSN(readOnly bool) string {
	p := url.Values{}
	for k, v := range c.params {
		p[k] = v
	}
	if p.Get("_busy_timeout") == "" && p.Get("_timeout") == "" {
		p.Set("_busy_timeout", strconv.FormatInt(sqliteBusyTimeout.Milliseconds(), 10))
	}
	if p.Get("_stmt_cache_size") == "" {
		p.Set("_stmt_cache_size", strconv.Itoa(sqliteStmtCacheSize))
	}
	p.Set("_foreign_keys", "1")
	p.Del("_fk")
	p.Del("_journal")
	p.Del("_query_only")
	if readOnly {
		p.Del("_journal_mode") // the writer has already switched the file to WAL, which persists
		p.Del("_txlock")
		p.Set("_query_only", "1")
	} else {
		// WAL lets readers run while the writer commits. BEGIN IMMEDIATE takes the write lock at the
		// start, so a transaction never fails half-way when it first writes.
		p.Set("_journal_mode", "WAL")
		p.Set("_txlock", "immediate")
	}
	return "file:" + escapeURIPath(c.path) + "?" + p.Encode()
}

// escapeURIPath escapes the characters that would end the path part of an SQLite URI.
func escapeURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
