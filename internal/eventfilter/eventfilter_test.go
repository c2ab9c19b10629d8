package eventfilter

import "testing"

func TestTypeMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, typ string
		want         bool
	}{
		{"m.room.message", "m.room.message", true},
		{"m.room.message", "m.room.messages", false},
		{"m.room.*", "m.room.member", true},
		{"m.room.*", "m.room", false},
		{"*", "anything", true},
		{"m.*.member", "m.room.member", true},
		{"m.*.member", "m.member", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"m.room.[a]", "m.room.a", false}, // only * is special
		{"*.x.*", "a.x.b", true},
		{"*.topic", "m.room.name", false},
		{"m.room.n*e", "m.room.name", true},
		{"m.room.message.*", "m.room.message", false},
		{"m.room.?ame", "m.room.name", false},
	} {
		if got := TypeMatches(c.pattern, c.typ); got != c.want {
			t.Errorf("TypeMatches(%q, %q) = %v", c.pattern, c.typ, got)
		}
	}
	if !AnyTypeMatches([]string{"x", "m.*"}, "m.y") || AnyTypeMatches(nil, "m.y") {
		t.Error("AnyTypeMatches")
	}
}
