package storage

import (
	"fmt"
	"testing"
)

func TestRewritePlaceholders(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"none", "SELECT 1", "SELECT 1"},
		{"simple", "SELECT a FROM t WHERE b = $1 AND c = $2", "SELECT a FROM t WHERE b = ?1 AND c = ?2"},
		{"reuse and order", "SELECT $2, $1, $2", "SELECT ?2, ?1, ?2"},
		{"more than nine", "VALUES ($9, $10, $11, $123)", "VALUES (?9, ?10, ?11, ?123)"},
		{"string literal", "SELECT '$1', $1", "SELECT '$1', ?1"},
		{"doubled quote", "SELECT 'it''s $1', $2", "SELECT 'it''s $1', ?2"},
		{"quoted identifier", `SELECT "a$1""$2" FROM t WHERE x = $1`, `SELECT "a$1""$2" FROM t WHERE x = ?1`},
		{"backquote identifier", "SELECT `$1` FROM t", "SELECT `$1` FROM t"},
		{"bracket identifier", "SELECT [$1] FROM t WHERE a = $1", "SELECT [$1] FROM t WHERE a = ?1"},
		{"line comment", "SELECT $1 -- not $2\n, $3", "SELECT ?1 -- not $2\n, ?3"},
		{"block comment", "SELECT /* $1 */ $2", "SELECT /* $1 */ ?2"},
		{"dollar in identifier", "SELECT foo$1 FROM t WHERE a=$1", "SELECT foo$1 FROM t WHERE a=?1"},
		{"named parameter untouched", "SELECT $name, $1", "SELECT $name, ?1"},
		{"lone dollar", "SELECT '$' || $", "SELECT '$' || $"},
		{"adjacent operators", "WHERE a=$1||$2", "WHERE a=?1||?2"},
		{"unterminated literal", "SELECT $1, 'oops $2", "SELECT ?1, 'oops $2"},
		{"unterminated comment", "SELECT $1 /* $2", "SELECT ?1 /* $2"},
		{"unterminated bracket", "SELECT $1 [$2", "SELECT ?1 [$2"},
		{"cast is kept", "SELECT $1::text", "SELECT ?1::text"},
		{"minus is not comment", "SELECT $1 - $2", "SELECT ?1 - ?2"},
		{"slash is not comment", "SELECT $1 / $2", "SELECT ?1 / ?2"},
		{"non-ASCII", "SELECT 'é$1', é$1, $1", "SELECT 'é$1', é$1, ?1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rewritePlaceholders(tt.in); got != tt.want {
				t.Errorf("rewritePlaceholders(%q) = %q, want %q", tt.in, got, tt.want)
			}
			var r rewriter
			for range 2 { // the second call is served from the cache
				if got := r.rewrite(tt.in); got != tt.want {
					t.Errorf("rewrite(%q) = %q, want %q", tt.in, got, tt.want)
				}
			}
		})
	}
}

func TestRewriteCacheBounded(t *testing.T) {
	var r rewriter
	for i := range maxCachedQueries + 100 {
		q := fmt.Sprintf("SELECT $1 FROM t%d", i)
		if got, want := r.rewrite(q), fmt.Sprintf("SELECT ?1 FROM t%d", i); got != want {
			t.Fatalf("rewrite = %q, want %q", got, want)
		}
	}
	if n := r.size.Load(); n != maxCachedQueries {
		t.Errorf("cache holds %d queries, want %d", n, maxCachedQueries)
	}
}

func FuzzRewritePlaceholders(f *testing.F) {
	for _, s := range []string{"SELECT $1", "'$1' \"$2\" -- $3\n /* $4 */ $5", "[$1", "a$1$2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out := rewritePlaceholders(q)
		// Only '$' may change, and only into '?', so the length is kept.
		if len(out) != len(q) {
			t.Fatalf("length changed: %q → %q", q, out)
		}
		for i := range len(q) {
			if q[i] != out[i] && (q[i] != '$' || out[i] != '?') {
				t.Fatalf("byte %d changed: %q → %q", i, q, out)
			}
		}
	})
}

func BenchmarkRewriteCached(b *testing.B) {
	var r rewriter
	q := "INSERT INTO events (room_id, event_id, json, position) VALUES ($1, $2, $3, $4)"
	for b.Loop() {
		_ = r.rewrite(q)
	}
}
