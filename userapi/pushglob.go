package userapi

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Glob matching for push rule conditions (appendices, "Glob-style matching"; "Push Rules",
// event_match and content rules).

// globMode says how matchGlob matches.
type globMode uint8

const (
	globWords   globMode = 1 << iota // any substring between word boundaries, as content.body
	globLiteral                      // * and ? are ordinary characters
	globASCII                        // the value is known to be ASCII only
)

// isASCII reports whether s holds no byte above 0x7F.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// matchGlob matches a glob ("Glob-style matching": * matches zero or more characters, ? exactly
// one) case-insensitively (Unicode simple case folding) against value: the whole value, or with
// globWords any substring of it that starts and ends at a word boundary, as event_match does for
// content.body.
//
// A glob is a first segment, then segments each after a '*'. Every pattern character consumes
// exactly one character of the value, so a segment's match ends the later the later it starts:
// taking the leftmost match of each segment in turn leaves the most room for the rest, and so
// decides the match without backtracking.
func matchGlob(pattern, value string, mode globMode) bool {
	words, literal := mode&globWords != 0, mode&globLiteral != 0
	if len(pattern) > maxGlobLen {
		return false
	}
	first, rest, star := pattern, "", false
	if !literal {
		first, rest, star = strings.Cut(pattern, "*")
	}
	if !star {
		if !words {
			if !literal && strings.IndexByte(first, '?') < 0 {
				return strings.EqualFold(first, value) // the common case: no wildcard at all
			}
			end, ok := matchSegment(first, value, 0, literal)
			return ok && end == len(value)
		}
		for i := nextStart(first, value, 0, mode); i >= 0; i = nextStart(first, value, i+1, mode) {
			if atWordBoundary(value, i) {
				if end, ok := matchSegment(first, value, i, literal); ok && atWordBoundary(value, end) {
					return true
				}
			}
		}
		return false
	}
	p := -1 // where the first segment's leftmost match ends
	if !words {
		if end, ok := matchSegment(first, value, 0, false); ok {
			p = end
		}
	} else {
		for i := nextStart(first, value, 0, mode); i >= 0; i = nextStart(first, value, i+1, mode) {
			if atWordBoundary(value, i) {
				if end, ok := matchSegment(first, value, i, false); ok {
					p = end
					break
				}
			}
		}
	}
	if p < 0 {
		return false
	}
	for {
		seg, more, ok := strings.Cut(rest, "*")
		if !ok {
			break // rest is the last segment
		}
		end, found := findSegment(seg, value, p, mode)
		if !found {
			return false
		}
		p, rest = end, more
	}
	if !words {
		return matchSuffix(rest, value, p)
	}
	for q := nextStart(rest, value, p, mode); q >= 0; q = nextStart(rest, value, q+1, mode) {
		if end, ok := matchSegment(rest, value, q, false); ok && atWordBoundary(value, end) {
			return true
		}
	}
	return false
}

// asciiFoldsInASCII tells the ASCII characters whose case variants are all ASCII: every one but
// k and s (the Kelvin sign and the long s fold to them). Computed once, then only read.
var asciiFoldsInASCII = func() (t [utf8.RuneSelf]bool) {
	for c := range rune(utf8.RuneSelf) {
		t[c] = true
		for r := unicode.SimpleFold(c); r != c; r = unicode.SimpleFold(r) {
			t[c] = t[c] && r < utf8.RuneSelf
		}
	}
	return t
}()

// nextStart returns the first index from i (up to len(s)) where a match of seg may start, or -1.
// When seg starts with an ASCII character, only the bytes equal to it under ASCII case folding
// qualify, which a plain byte scan finds, and for k and s also the starts of non-ASCII
// characters; otherwise every character start does.
func nextStart(seg, s string, i int, mode globMode) int {
	if i > len(s) {
		return -1
	}
	if seg != "" {
		if c := seg[0]; c < utf8.RuneSelf && (c != '?' || mode&globLiteral != 0) {
			lc := lowerASCII(c)
			if !asciiFoldsInASCII[c] && mode&globASCII == 0 {
				for ; i < len(s); i++ {
					if b := s[i]; lowerASCII(b) == lc || b >= 0xC0 {
						return i
					}
				}
				return -1
			}
			j := strings.IndexByte(s[i:], lc)
			if uc := upperASCII(c); uc != lc {
				before := s[i:]
				if j >= 0 {
					before = s[i : i+j]
				}
				if k := strings.IndexByte(before, uc); k >= 0 {
					return i + k
				}
			}
			if j < 0 {
				return -1
			}
			return i + j
		}
	}
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return i
}

// isWordByte reports whether c is in [A-Za-z0-9_]. Bytes of multi-byte characters are not: every
// other character is a word boundary.
func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// atWordBoundary reports whether position i of s (0 to len(s)) touches a word boundary: "the
// start or end of the value, or any character not in the sets [A-Z], [a-z], [0-9] or _"
// ("Push Rules", content rules).
func atWordBoundary(s string, i int) bool {
	return i == 0 || i == len(s) || !isWordByte(s[i-1]) || !isWordByte(s[i])
}

// matchSegment matches seg, which holds no '*' (unless literal), at index i of s and returns where
// the match ends.
func matchSegment(seg, s string, i int, literal bool) (int, bool) {
	for k := 0; k < len(seg); {
		if i >= len(s) {
			return 0, false
		}
		pc, sc := seg[k], s[i]
		if pc < utf8.RuneSelf && sc < utf8.RuneSelf {
			if pc == sc || (pc == '?' && !literal) || lowerASCII(pc) == lowerASCII(sc) {
				k++
				i++
				continue
			}
			return 0, false
		}
		pr, pw := utf8.DecodeRuneInString(seg[k:])
		sr, sw := utf8.DecodeRuneInString(s[i:])
		if !(pr == '?' && !literal) && !foldEqual(pr, sr) {
			return 0, false
		}
		k += pw
		i += sw
	}
	return i, true
}

// findSegment returns where the leftmost match of seg at or after index p of s ends.
func findSegment(seg, s string, p int, mode globMode) (int, bool) {
	for i := nextStart(seg, s, p, mode); i >= 0; i = nextStart(seg, s, i+1, mode) {
		if end, ok := matchSegment(seg, s, i, false); ok {
			return end, true
		}
	}
	return 0, false
}

// matchSuffix reports whether seg matches the end of s without reaching before index p.
func matchSuffix(seg, s string, p int) bool {
	t := s[p:]
	for len(seg) > 0 {
		if len(t) == 0 {
			return false
		}
		pr, pw := utf8.DecodeLastRuneInString(seg)
		sr, sw := utf8.DecodeLastRuneInString(t)
		if pr != '?' && !foldEqual(pr, sr) {
			return false
		}
		seg, t = seg[:len(seg)-pw], t[:len(t)-sw]
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// foldEqual reports whether two characters are equal under Unicode simple case folding, as
// strings.EqualFold compares them.
func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		return lowerASCII(byte(a)) == lowerASCII(byte(b))
	}
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}
