package pdu

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestCanonicalJSONSpecVectors runs every example of appendices.md "Canonical JSON",
// "Examples" (testdata/canonical-json.json is a verbatim copy of them).
func TestCanonicalJSONSpecVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/canonical-json.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors struct {
		Cases []struct {
			Input     string `json:"input"`
			Canonical string `json:"canonical"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors.Cases) != 10 {
		t.Fatalf("expected the spec's 10 examples, got %d", len(vectors.Cases))
	}
	for _, c := range vectors.Cases {
		got, err := CanonicalJSON([]byte(c.Input))
		if err != nil {
			t.Errorf("CanonicalJSON(%q): %v", c.Input, err)
			continue
		}
		if string(got) != c.Canonical {
			t.Errorf("CanonicalJSON(%q) = %s, want %s", c.Input, got, c.Canonical)
		}
		// Canonical output is a fixed point.
		again, err := CanonicalJSON(got)
		if err != nil || string(again) != string(got) {
			t.Errorf("CanonicalJSON is not idempotent on %s: %s, %v", got, again, err)
		}
	}
}

func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"whitespace", " { \"a\" :\t[ 1 ,\r\n2 ] } ", `{"a":[1,2]}`},
		{"nested sort", `{"b":{"d":1,"c":2},"a":[{"z":1,"y":2}]}`, `{"a":[{"y":2,"z":1}],"b":{"c":2,"d":1}}`},
		{"codepoint order", `{"é":1,"z":2,"😀":3,"ｚ":4}`, `{"z":2,"é":1,"ｚ":4,"😀":3}`},
		{"short escapes", `"\b\t\n\f\r\"\\"`, `"\b\t\n\f\r\"\\"`},
		{"control escapes lower-case", `"\u0001\u001F\u000b\u007f"`, "\"\\u0001\\u001f\\u000b\u007f\""},
		{"raw control written as escape", "\"\\u0000\"", `"\u0000"`},
		{"solidus unescaped", `"a\/b"`, `"a/b"`},
		{"unicode unescaped", `"\u00e9\u2028\ud83d\ude00"`, "\"é\u2028😀\""},
		{"max int", `9007199254740991`, `9007199254740991`},
		{"min int", `-9007199254740991`, `-9007199254740991`},
		{"negative zero", `-0`, `0`},
		{"integral float", `1.0`, `1`},
		{"exponent", `1e2`, `100`},
		{"big exponent of zero", `0e999999999`, `0`},
		{"negative exponent integral", `1500e-2`, `15`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"empty", `[{},[],""]`, `[{},[],""]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON([]byte(tt.in))
			if err != nil {
				t.Fatalf("CanonicalJSON(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("CanonicalJSON(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalJSONRejects(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
	}{
		{"empty input", ``, ErrNotJSON},
		{"trailing data", `{} {}`, ErrNotJSON},
		{"unterminated", `{"a":1`, ErrNotJSON},
		{"leading zero", `[01]`, ErrNotJSON},
		{"bare dot", `[1.]`, ErrNotJSON},
		{"plus sign", `[+1]`, ErrNotJSON},
		{"NaN", `[NaN]`, ErrNotJSON},
		{"single quotes", `{'a':1}`, ErrNotJSON},
		{"trailing comma", `[1,]`, ErrNotJSON},
		{"raw control character", "\"a\x01\"", ErrNotJSON},
		{"invalid UTF-8", "\"\xff\"", ErrNotJSON},
		{"UTF-8 surrogate", "\"\xed\xa0\x80\"", ErrNotJSON},
		{"bad escape", `"\x"`, ErrNotJSON},
		{"lone high surrogate", `"\ud800"`, ErrBadJSON},
		{"lone low surrogate", `"\udc00"`, ErrBadJSON},
		{"reversed surrogates", `"\ude00\ud83d"`, ErrBadJSON},
		{"duplicate key", `{"a":1,"a":1}`, ErrBadJSON},
		{"nested duplicate key", `{"a":[{"b":{"c":1,"c":2}}]}`, ErrBadJSON},
		{"duplicate via escape", `{"a":1,"\u0061":2}`, ErrBadJSON},
		{"2^53", `9007199254740992`, ErrBadJSON},
		{"-2^53", `-9007199254740992`, ErrBadJSON},
		{"fraction", `1.5`, ErrBadJSON},
		{"small exponent", `1e-2`, ErrBadJSON},
		{"huge exponent", `1e400`, ErrBadJSON},
		{"huge number", `123456789012345678901234567890`, ErrBadJSON},
		{"too deep", strings.Repeat("[", maxNesting+1) + strings.Repeat("]", maxNesting+1), ErrBadJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("CanonicalJSON(%q) = %s, %v; want error %v", tt.in, got, err, tt.want)
			}
		})
	}
	deep := strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting)
	if _, err := CanonicalJSON([]byte(deep)); err != nil {
		t.Errorf("nesting of exactly %d levels: %v", maxNesting, err)
	}
}

// TestNumberModes checks the strict numbers of room versions 6+ and the lenient ones of 1-5.
func TestNumberModes(t *testing.T) {
	tests := []struct {
		in      string
		strict  string // "" means refused
		lenient string
	}{
		{`0`, `0`, `0`},
		{`-0`, `0`, `0`},
		{`9007199254740991`, `9007199254740991`, `9007199254740991`},
		{`-9007199254740991`, `-9007199254740991`, `-9007199254740991`},
		{`9007199254740992`, ``, `9007199254740992`},
		{`-9007199254740992`, ``, `-9007199254740992`},
		{`18446744073709551616`, ``, `18446744073709551616`},
		{`1.0`, ``, `1.0`},
		{`1e2`, ``, `100.0`},
		{`-1.0`, ``, `-1.0`},
		{`50.57`, ``, `50.57`},
	}
	for _, tt := range tests {
		for _, mode := range []numMode{numStrict, numLenient} {
			want := tt.strict
			if mode == numLenient {
				want = tt.lenient
			}
			v, err := parseJSON([]byte(tt.in), mode)
			switch {
			case want == "" && err == nil:
				t.Errorf("mode %d: %s accepted as %s, want refusal", mode, tt.in, v.str)
			case want == "" && !errors.Is(err, ErrBadJSON):
				t.Errorf("mode %d: %s: error %v, want ErrBadJSON", mode, tt.in, err)
			case want != "" && err != nil:
				t.Errorf("mode %d: %s: %v", mode, tt.in, err)
			case want != "" && string(v.encode()) != want:
				t.Errorf("mode %d: %s encoded as %s, want %s", mode, tt.in, v.encode(), want)
			}
		}
	}
	if _, err := parseJSON([]byte(strings.Repeat("9", maxIntDigits)), numLenient); err != nil {
		t.Errorf("lenient integer of %d digits: %v", maxIntDigits, err)
	}
	if _, err := parseJSON([]byte(strings.Repeat("9", maxIntDigits+1)), numLenient); !errors.Is(err, ErrBadJSON) {
		t.Errorf("lenient integer of %d digits: %v, want ErrBadJSON", maxIntDigits+1, err)
	}
	if _, err := parseJSON([]byte(`1e400`), numLenient); !errors.Is(err, ErrBadJSON) {
		t.Errorf("lenient 1e400: %v, want ErrBadJSON (no JSON for infinity)", err)
	}
	// Room versions 1-5 keep the last of duplicate keys, as the servers that wrote them did.
	v, err := parseJSON([]byte(`{"b":1,"a":1,"b":2}`), numLenient)
	if err != nil || string(v.encode()) != `{"a":1,"b":2}` {
		t.Errorf("lenient duplicates: %s, %v", v.encode(), err)
	}
	if _, err := parseJSON([]byte(`{"a":1,"a":2}`), numStrict); !errors.Is(err, ErrBadJSON) {
		t.Errorf("strict duplicates: %v", err)
	}
}

// TestPythonFloat compares with Python 3's json.dumps(json.loads(x)).
func TestPythonFloat(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1.0", "1.0"},
		{"1e2", "100.0"},
		{"1.5", "1.5"},
		{"0.1", "0.1"},
		{"1e16", "1e+16"},
		{"1e15", "1000000000000000.0"},
		{"123456789012345678.0", "1.2345678901234568e+17"},
		{"1e-5", "1e-05"},
		{"0.0001", "0.0001"},
		{"0.00012345", "0.00012345"},
		{"-2.5e-7", "-2.5e-07"},
		{"5.114698E4", "51146.98"},
		{"50.57", "50.57"},
		{"1e308", "1e+308"},
		{"2.2250738585072014e-308", "2.2250738585072014e-308"},
		{"5e-324", "5e-324"},
		{"-0.0", "-0.0"},
		{"0.0", "0.0"},
		{"1e-400", "0.0"},
		{"3.141592653589793", "3.141592653589793"},
		{"100.0", "100.0"},
		{"1E+2", "100.0"},
		{"9007199254740993.0", "9007199254740992.0"},
		{"12345.678e10", "123456780000000.0"},
		{"1.7976931348623157e308", "1.7976931348623157e+308"},
		{"0.3", "0.3"},
		{"2e-4", "0.0002"},
		{"9.999999999999999e15", "1e+16"},
		{"1e22", "1e+22"},
		{"123e-20", "1.23e-18"},
	}
	for _, tt := range tests {
		v, err := parseJSON([]byte(tt.in), numLenient)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if v.str != tt.want {
			t.Errorf("%s written as %s, want %s", tt.in, v.str, tt.want)
		}
		// What we write reads back the same.
		again, err := parseJSON([]byte(v.str), numLenient)
		if err != nil || again.str != v.str {
			t.Errorf("%s does not round-trip: %s, %v", v.str, again.str, err)
		}
	}
}
