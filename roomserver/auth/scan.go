package auth

import (
	"bytes"
	"unicode/utf8"
)

// Power level events can name tens of thousands of users, and most checks want one or two of
// them: walking the JSON text beats decoding a map of them all. The scanner checks the structure
// of the objects it is asked to walk but skips over values quickly, without validating them:
// event content reaching the rules was parsed as JSON already, and malformed input may only
// give a wrong answer, never a panic.

// jkey is an object member's key as it appears in the JSON text.
type jkey struct {
	raw   []byte // quotes included
	plain bool   // printable ASCII without escapes: the text is the value
}

// equals reports whether the key decodes to want.
func (k jkey) equals(want string) bool {
	if k.plain {
		return string(k.raw[1:len(k.raw)-1]) == want
	}
	s, ok := str(k.raw)
	return ok && s == want
}

// String decodes the key; "" when it is malformed.
func (k jkey) String() string {
	if k.plain {
		return string(k.raw[1 : len(k.raw)-1])
	}
	s, _ := str(k.raw)
	return s
}

// eachMember calls fn with the key and raw value of each member of the JSON object obj, in
// order, without allocating. It reports false when obj is not an object.
func eachMember(obj []byte, fn func(key jkey, val []byte)) bool {
	s := scanner{b: obj}
	s.ws()
	ok := s.object(func(key jkey) bool {
		start := s.i
		if !s.value() {
			return false
		}
		fn(key, s.b[start:s.i])
		return true
	})
	s.ws()
	return ok && s.i == len(s.b)
}

// plainString returns the text of a raw JSON string that needs no decoding: no escapes, valid
// UTF-8, no control characters.
func plainString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for i, c := range inner {
		if c < 0x20 || c == '"' || c == '\\' {
			return nil, false
		}
		if c >= 0x80 {
			rest := inner[i:]
			if !utf8.Valid(rest) || bytes.IndexByte(rest, '\\') >= 0 || bytes.IndexByte(rest, '"') >= 0 || bytes.IndexFunc(rest, func(r rune) bool { return r < 0x20 }) >= 0 {
				return nil, false
			}
			break
		}
	}
	return inner, true
}

type scanner struct {
	b     []byte
	i     int
	plain bool // whether the last string skipped was printable ASCII without escapes
}

// object walks the object at the scanner, calling fn with each key with the scanner at the
// start of the value, which fn must consume (false: it was malformed).
func (s *scanner) object(fn func(key jkey) bool) bool {
	if !s.eat('{') {
		return false
	}
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		s.ws()
		ks := s.i
		if !s.str() {
			return false
		}
		key := jkey{s.b[ks:s.i], s.plain}
		s.ws()
		if !s.eat(':') {
			return false
		}
		s.ws()
		if !fn(key) {
			return false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str skips a string.
func (s *scanner) str() bool {
	b, i := s.b, s.i
	if i >= len(b) || b[i] != '"' {
		return false
	}
	plain := true
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.i, s.plain = i+1, plain
			return true
		case c == '\\':
			i++
			plain = false
		case c-0x20 >= 0x60: // below 0x20 or above 0x7f
			plain = false
		}
	}
	return false
}

// value skips one value: a string, a nested object or array (brackets counted, strings
// skipped), or a number or literal (up to the next delimiter).
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.str()
	case '{', '[':
		b, depth := s.b, 0
		for i := s.i; i < len(b); i++ {
			switch b[i] {
			case '"':
				s.i = i
				if !s.str() {
					return false
				}
				i = s.i - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i = i + 1
					return true
				}
			}
		}
		return false
	case ',', '}', ']', ':':
		return false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.i > start
		}
		s.i++
	}
	return s.i > start
}
