package searchstore

import (
	"strings"
	"unicode"
)

// MaxWords bounds the words taken from one search term, so a pasted paragraph cannot build a
// query with thousands of terms.
const MaxWords = 16

// Words splits s into lower-cased words: runs of letters, digits and combining marks, which is
// how both engines' tokenizers (SQLite's unicode61, PostgreSQL's simple parser) see words, so
// a word from here is a term both indexes know. Repeated words are kept once, and runs of marks
// alone, which the tokenizers drop, are no words.
func Words(s string) []string {
	var out []string
	seen := map[string]bool{}
	for w := range strings.FieldsFuncSeq(s, notWordRune) {
		w = strings.ToLower(w)
		if !seen[w] && strings.IndexFunc(w, isLetterOrDigit) >= 0 {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

func notWordRune(r rune) bool {
	return !isLetterOrDigit(r) && !unicode.IsMark(r)
}

func isLetterOrDigit(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// clean removes what PostgreSQL refuses in text (U+0000), which content from other servers may
// hold, so such an event can never stop the consumer.
func clean(s string) string {
	return strings.ReplaceAll(s, "\x00", "")
}
