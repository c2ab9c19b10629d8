package ephemeral

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestChangeLog(t *testing.T) {
	l := newChangeLog(10, 100)
	l.add(change{pos: 11, room: "!a"})
	l.add(change{pos: 12, room: "!b", only: "@alice"})
	l.add(change{pos: 13, room: "!a"})
	l.add(change{pos: 15, room: "!c"})
	for _, tc := range []struct {
		room id.RoomID
		user id.UserID
		from int64
		want bool
	}{
		{"!a", "@bob", 10, true},
		{"!a", "@bob", 12, true},
		{"!a", "@bob", 13, false},
		{"!b", "@bob", 10, false}, // alice's private change
		{"!b", "@alice", 10, true},
		{"!b", "@alice", 12, false},
		{"!b", "", 10, false},
		{"!c", "@bob", 14, true},
		{"!d", "@bob", 10, false},
	} {
		if got := l.changedAfter(tc.room, tc.user, tc.from); got != tc.want {
			t.Errorf("changedAfter(%s, %s, %d) = %v", tc.room, tc.user, tc.from, got)
		}
	}
	for _, tc := range []struct {
		from, to int64
		want     bool
	}{{10, 11, true}, {13, 14, false}, {13, 15, true}, {15, 20, false}} {
		if got := l.any(tc.from, tc.to); got != tc.want {
			t.Errorf("any(%d, %d) = %v", tc.from, tc.to, got)
		}
	}
	if l.covers(9) || !l.covers(10) {
		t.Error("floor 10 misjudged")
	}

	l.forgetBefore(13)
	if l.floor != 12 || len(l.entries) != 2 || !l.covers(12) || l.covers(11) {
		t.Fatalf("after forgetBefore(13): floor %d, %d entries", l.floor, len(l.entries))
	}
	// !a's latest change (13) is still known; alice's private one (12) is forgotten.
	if len(l.last) != 2 || !l.changedAfter("!a", "", 12) || l.changedAfter("!b", "@alice", 11) {
		t.Fatalf("latest changes after forgetting: %v", l.last)
	}
}

// TestChangeLogLimit keeps the log and its index within the limit and moves the floor with what
// it forgets.
func TestChangeLogLimit(t *testing.T) {
	l := newChangeLog(0, 100)
	for pos := int64(1); pos <= 1000; pos++ {
		l.add(change{pos: pos, room: id.RoomID(string(rune('a' + pos%300)))})
		if len(l.entries) > 100 || len(l.last) > 100 {
			t.Fatalf("%d entries, %d rooms after position %d", len(l.entries), len(l.last), pos)
		}
		if l.floor != 0 && l.entries[0].pos != l.floor+1 {
			t.Fatalf("floor %d but oldest entry %d", l.floor, l.entries[0].pos)
		}
	}
}
