package pdu

import (
	"math"
	"strconv"
	"strings"
)

// number reads a JSON number (RFC 8259 grammar) and converts it per the parser's mode.
func (p *parser) number() (value, error) {
	start := p.pos
	neg := p.data[p.pos] == '-'
	if neg {
		p.pos++
	}
	intStart := p.pos
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && '1' <= p.data[p.pos] && p.data[p.pos] <= '9':
		p.digits()
	default:
		return value{}, p.syntaxError("invalid number")
	}
	intPart := string(p.data[intStart:p.pos])
	var frac, exp []byte
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		fs := p.pos
		if p.digits() == 0 {
			return value{}, p.syntaxError("invalid number")
		}
		frac = p.data[fs:p.pos]
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		es := p.pos
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return value{}, p.syntaxError("invalid number")
		}
		exp = p.data[es:p.pos]
	}
	literal := p.data[start:p.pos]
	isInt := frac == nil && exp == nil
	switch {
	case isInt && p.mode == numLenient:
		// Any size: the JSON parser of the reference implementation reads integers exactly,
		// up to its limit of maxIntDigits digits.
		if len(intPart) > maxIntDigits {
			p.pos = start
			return value{}, p.badJSON("integer of more than %d digits", maxIntDigits)
		}
		return value{kind: kindNumber, isInt: true, str: signed(neg && intPart != "0", intPart)}, nil
	case isInt:
		n, err := strconv.ParseUint(intPart, 10, 64)
		if err != nil || n > maxSafeInt {
			p.pos = start
			return value{}, p.badJSON("integer %s out of the range ±(2^53-1)", literal)
		}
		return value{kind: kindNumber, isInt: true, str: signed(neg && n != 0, intPart)}, nil
	case p.mode == numStrict:
		p.pos = start
		return value{}, p.badJSON("number %s is not an integer", literal)
	case p.mode == numLenient:
		f, err := strconv.ParseFloat(string(literal), 64)
		if err != nil && math.IsInf(f, 0) { // overflow; underflow quietly gives ±0 as in Python
			p.pos = start
			return value{}, p.badJSON("number %s out of range", literal)
		}
		return value{kind: kindNumber, str: pythonFloat(f)}, nil
	default:
		text, ok := integralValue(neg, intPart, frac, exp)
		if !ok {
			p.pos = start
			return value{}, p.badJSON("number %s is not an integer in the range ±(2^53-1)", literal)
		}
		return value{kind: kindNumber, isInt: true, str: text}, nil
	}
}

// maxIntDigits is the longest integer Python's int() reads by default (sys.int_info), which
// bounds the integers of room versions 1 to 5 the way the servers that wrote them did.
const maxIntDigits = 4300

func (p *parser) digits() int {
	n := 0
	for p.pos < len(p.data) && '0' <= p.data[p.pos] && p.data[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}

func signed(neg bool, digits string) string {
	if neg {
		return "-" + digits
	}
	return digits
}

// integralValue gives the canonical integer text of a number spelt with a fraction or an
// exponent, if its value is an integer within ±(2^53-1). It works on the decimal digits so
// that a huge exponent costs nothing.
func integralValue(neg bool, intPart string, frac, exp []byte) (string, bool) {
	mant := intPart + string(frac)
	// value = mant × 10^(e - len(frac))
	e := 0
	if exp != nil {
		expNeg := exp[0] == '-'
		ds := exp
		if exp[0] == '+' || exp[0] == '-' {
			ds = exp[1:]
		}
		for _, c := range ds {
			e = e*10 + int(c-'0')
			if e > 1000 {
				e = 1000 // far beyond any representable integer
			}
		}
		if expNeg {
			e = -e
		}
	}
	e -= len(frac)
	// Drop leading zeros, and trailing zeros into the exponent.
	i := 0
	for i < len(mant) && mant[i] == '0' {
		i++
	}
	mant = mant[i:]
	if mant == "" {
		return "0", true
	}
	for mant[len(mant)-1] == '0' {
		mant = mant[:len(mant)-1]
		e++
	}
	if e < 0 || len(mant)+e > 16 {
		return "", false // a fraction, or more than 16 digits
	}
	digits := mant
	for range e {
		digits += "0"
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > maxSafeInt {
		return "", false
	}
	return signed(neg, digits), true
}

// pythonFloat formats f the way Python's repr (and so its json module) does: the shortest
// digits that read back as f, in positional notation with at least one fractional digit for
// 1e-4 <= |f| < 1e16, and in exponent notation with a signed exponent of at least two digits
// otherwise. Room versions 1 to 5 may hold such numbers (rooms/v1.md "Canonical JSON"), and
// their hashes were computed by servers that wrote them this way.
func pythonFloat(f float64) string {
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	var b strings.Builder
	if f < 0 {
		b.WriteByte('-')
		f = -f
	}
	// Shortest round-tripping digits, as d.ddde±x.
	mant, expText, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expText)
	decpt := exp + 1 // f = 0.digits × 10^decpt
	switch {
	case decpt <= -4 || decpt > 16:
		b.WriteByte(digits[0])
		if len(digits) > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if exp < 0 {
			b.WriteByte('-')
			exp = -exp
		} else {
			b.WriteByte('+')
		}
		if exp < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(exp))
	case decpt <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -decpt))
		b.WriteString(digits)
	case decpt < len(digits):
		b.WriteString(digits[:decpt])
		b.WriteByte('.')
		b.WriteString(digits[decpt:])
	default:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", decpt-len(digits)))
		b.WriteString(".0")
	}
	return b.String()
}
