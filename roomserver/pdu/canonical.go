package pdu

import (
	"cmp"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// kind is the JSON type of a value.
type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindArray
	kindObject
)

// value is one parsed JSON value. Parsing does all the checking once, so that hashing,
// redaction and signing are plain walks over a tree whose canonical form is known: strings
// are decoded, numbers hold their canonical text, and objects keep their members sorted by
// key and unique.
type value struct {
	kind  kind
	isInt bool   // numbers: spelt without fraction or exponent
	str   string // strings: the decoded text; numbers: the canonical text
	arr   []value
	obj   []member
}

// member is one key of an object.
type member struct {
	key string
	val value
}

// numMode says how numbers are read.
type numMode uint8

const (
	// numStrict is room versions 6 and later: only integers in [-(2^53)+1, (2^53)-1], spelt
	// as integers (rooms/v6.md "Canonical JSON").
	numStrict numMode = iota
	// numLenient is room versions 1 to 5, which must not enforce the canonical JSON rules
	// (rooms/v1.md "Canonical JSON"). The spec does not say how such numbers are encoded, so
	// they are written the way the reference implementation (Python's json module) writes
	// them: integers of any size exactly, other numbers as float64 in Python's repr form.
	numLenient
	// numCanonical is the encoding of appendices.md "Canonical JSON" on its own: any number
	// whose value is an integer in range is accepted and written as that integer, so that
	// 1e10 becomes 10000000000 as in the spec's examples; anything else is refused.
	numCanonical
)

// maxNesting bounds how deeply arrays and objects may nest, so that hostile input cannot
// exhaust the stack.
const maxNesting = 512

// maxSafeInt is (2^53)-1, the largest integer canonical JSON allows (appendices.md).
const maxSafeInt = 1<<53 - 1

// CanonicalJSON re-encodes a JSON value as canonical JSON (appendices.md "Canonical JSON"):
// no insignificant whitespace, object keys sorted by code point, strings in UTF-8 with only
// the required escapes, and numbers written as integers. It refuses invalid JSON and UTF-8,
// duplicate object keys, lone surrogates, and numbers that are not integers in
// [-(2^53)+1, (2^53)-1].
func CanonicalJSON(raw []byte) ([]byte, error) {
	v, err := parseJSON(raw, numCanonical)
	if err != nil {
		return nil, err
	}
	return appendCanonical(make([]byte, 0, len(raw)), &v), nil
}

// parseJSON parses one JSON text in the given number mode.
func parseJSON(data []byte, mode numMode) (value, error) {
	p := parser{data: data, mode: mode, values: make([]value, 0, 8), members: make([]member, 0, 16)}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return value{}, p.syntaxError("data after the top-level value")
	}
	return v, nil
}

type parser struct {
	data  []byte
	pos   int
	mode  numMode
	depth int
	// Stacks on which arrays and objects collect their elements, so that each gets one
	// allocation of the right size however it nests.
	values  []value
	members []member
}

func (p *parser) syntaxError(msg string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrNotJSON, msg, p.pos)
}

func (p *parser) badJSON(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrBadJSON, fmt.Sprintf(format, args...), p.pos)
}

// skipSpace skips the four whitespace characters JSON allows (RFC 8259).
func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value() (value, error) {
	if p.pos >= len(p.data) {
		return value{}, p.syntaxError("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.string()
		return value{kind: kindString, str: s}, err
	case c == 't':
		return value{kind: kindTrue}, p.literal("true")
	case c == 'f':
		return value{kind: kindFalse}, p.literal("false")
	case c == 'n':
		return value{kind: kindNull}, p.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	default:
		return value{}, p.syntaxError(fmt.Sprintf("unexpected character %q", c))
	}
}

func (p *parser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.syntaxError("invalid literal")
	}
	p.pos += len(word)
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxNesting {
		return p.badJSON("nested more than %d levels deep", maxNesting)
	}
	return nil
}

func (p *parser) array() (value, error) {
	if err := p.enter(); err != nil {
		return value{}, err
	}
	p.pos++ // '['
	v := value{kind: kindArray}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return v, nil
	}
	base := len(p.values)
	for {
		p.skipSpace()
		elem, err := p.value()
		if err != nil {
			return value{}, err
		}
		p.values = append(p.values, elem)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return value{}, p.syntaxError("unterminated array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			v.arr = slices.Clone(p.values[base:])
			clear(p.values[base:])
			p.values = p.values[:base]
			return v, nil
		default:
			return value{}, p.syntaxError("expected ',' or ']'")
		}
	}
}

func (p *parser) object() (value, error) {
	if err := p.enter(); err != nil {
		return value{}, err
	}
	start := p.pos
	p.pos++ // '{'
	v := value{kind: kindObject}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return v, nil
	}
	base := len(p.members)
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return value{}, p.syntaxError("expected an object key")
		}
		key, err := p.string()
		if err != nil {
			return value{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return value{}, p.syntaxError("expected ':'")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value()
		if err != nil {
			return value{}, err
		}
		p.members = append(p.members, member{key: key, val: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return value{}, p.syntaxError("unterminated object")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] != '}' {
			return value{}, p.syntaxError("expected ',' or '}'")
		}
		p.pos++
		p.depth--
		break
	}
	v.obj = slices.Clone(p.members[base:])
	clear(p.members[base:])
	p.members = p.members[:base]
	obj, dup := sortMembers(v.obj, p.mode == numLenient)
	if dup != "" {
		p.pos = start
		return value{}, p.badJSON("duplicate key %q in object", dup)
	}
	v.obj = obj
	return v, nil
}

// sortMembers sorts members into canonical order: by key, comparing code points, which for
// UTF-8 is the same as comparing bytes. A repeated key is returned as dup unless keepLast is
// set; then the last occurrence wins, as in the JSON parsers of the servers that wrote the
// events of room versions 1 to 5.
func sortMembers(ms []member, keepLast bool) (sorted []member, dup string) {
	increasing := true
	for i := 1; i < len(ms); i++ {
		if ms[i-1].key >= ms[i].key {
			increasing = false
			break
		}
	}
	if increasing {
		return ms, ""
	}
	slices.SortStableFunc(ms, func(a, b member) int { return cmp.Compare(a.key, b.key) })
	out := ms[:0]
	for i := 0; i < len(ms); i++ {
		if i+1 < len(ms) && ms[i].key == ms[i+1].key {
			if !keepLast {
				return nil, ms[i].key
			}
			continue // a later member has the same key
		}
		out = append(out, ms[i])
	}
	return out, ""
}

// string reads a JSON string starting at its opening quote and returns its decoded text.
func (p *parser) string() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		case c == '\\':
			return p.stringSlow(start)
		case c < 0x20:
			return "", p.syntaxError("control character in string")
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.syntaxError("invalid UTF-8")
			}
			p.pos += size
		}
	}
	return "", p.syntaxError("unterminated string")
}

func (p *parser) stringSlow(start int) (string, error) {
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c == '\\':
			if p.pos+1 >= len(p.data) {
				return "", p.syntaxError("unterminated string")
			}
			esc := p.data[p.pos+1]
			p.pos += 2
			switch esc {
			case '"', '\\', '/':
				buf = append(buf, esc)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, err := p.unicodeEscape()
				if err != nil {
					return "", err
				}
				buf = utf8.AppendRune(buf, r)
			default:
				p.pos -= 2
				return "", p.syntaxError("invalid escape")
			}
		case c < 0x20:
			return "", p.syntaxError("control character in string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.syntaxError("invalid UTF-8")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
	return "", p.syntaxError("unterminated string")
}

// unicodeEscape reads the four hex digits after `\u`, and a second escape when the first is
// a high surrogate. A lone surrogate has no UTF-8 encoding, so canonical JSON cannot carry
// it: it is refused rather than silently replaced.
func (p *parser) unicodeEscape() (rune, error) {
	r1, ok := p.hex4()
	if !ok {
		return 0, p.syntaxError("invalid \\u escape")
	}
	if !utf16.IsSurrogate(r1) {
		return r1, nil
	}
	if r1 < 0xDC00 && len(p.data)-p.pos >= 6 && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
		p.pos += 2
		r2, ok := p.hex4()
		if !ok {
			return 0, p.syntaxError("invalid \\u escape")
		}
		if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
			return r, nil
		}
	}
	return 0, p.badJSON("lone UTF-16 surrogate in string")
}

func (p *parser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// appendCanonical appends the canonical JSON encoding of v (appendices.md "Canonical JSON").
func appendCanonical(buf []byte, v *value) []byte {
	switch v.kind {
	case kindNull:
		return append(buf, "null"...)
	case kindFalse:
		return append(buf, "false"...)
	case kindTrue:
		return append(buf, "true"...)
	case kindNumber:
		return append(buf, v.str...)
	case kindString:
		return appendString(buf, v.str)
	case kindArray:
		buf = append(buf, '[')
		for i := range v.arr {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendCanonical(buf, &v.arr[i])
		}
		return append(buf, ']')
	default:
		buf = append(buf, '{')
		for i := range v.obj {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, v.obj[i].key)
			buf = append(buf, ':')
			buf = appendCanonical(buf, &v.obj[i].val)
		}
		return append(buf, '}')
	}
}

// appendString writes s with only the escapes the canonical grammar allows: `"`, `\` and the
// ASCII control characters, using the short forms where they exist and lower-case hex
// otherwise (appendices.md "Canonical JSON", "Grammar").
func appendString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\b':
			buf = append(buf, '\\', 'b')
		case '\t':
			buf = append(buf, '\\', 't')
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\f':
			buf = append(buf, '\\', 'f')
		case '\r':
			buf = append(buf, '\\', 'r')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
