package storage

import (
	"strings"
	"sync"
	"sync/atomic"
)

// maxCachedQueries bounds the rewrite cache, so that code building query strings dynamically (for
// example IN lists of varying length) cannot grow it without limit. Queries past the bound are
// still rewritten, just not remembered.
const maxCachedQueries = 4096

// rewriter turns PostgreSQL placeholders ($1, $2 …) into SQLite's numbered parameters (?1, ?2 …),
// which keep the same order and reuse semantics. The project's queries are a fixed set of string
// constants run on hot paths, so each is scanned once and remembered.
type rewriter struct {
	cache sync.Map // query string → rewritten string
	size  atomic.Int64
}

func (r *rewriter) rewrite(query string) string {
	if strings.IndexByte(query, '$') < 0 {
		return query
	}
	if v, ok := r.cache.Load(query); ok {
		return v.(string)
	}
	out := rewritePlaceholders(query)
	if r.size.Load() < maxCachedQueries {
		if _, loaded := r.cache.LoadOrStore(query, out); !loaded {
			r.size.Add(1)
		}
	}
	return out
}

// rewritePlaceholders replaces every $n outside string literals, quoted identifiers and comments
// with ?n. A $ inside an identifier (SQLite and PostgreSQL both allow foo$1 as a name) is left alone.
func rewritePlaceholders(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := skipQuoted(q, i, c)
			b.WriteString(q[i:j])
			i = j
		case c == '[': // SQLite's MS Access style quoted identifier
			j := strings.IndexByte(q[i:], ']')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			end := len(q)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(q[i:end])
			i = end
		case c == '$' && i+1 < len(q) && isDigit(q[i+1]) && (i == 0 || !isIdentByte(q[i-1])):
			b.WriteByte('?')
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipQuoted returns the index just past the quoted run starting at q[start], where a doubled quote
// character stands for itself. An unterminated run extends to the end.
func skipQuoted(q string, start int, quote byte) int {
	for i := start + 1; i < len(q); i++ {
		if q[i] != quote {
			continue
		}
		if i+1 < len(q) && q[i+1] == quote {
			i++
			continue
		}
		return i + 1
	}
	return len(q)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z') || c >= 0x80
}
