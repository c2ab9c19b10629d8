package syncapi

import (
	"testing"

	"github.com/latticehq/lattice/storage/syncstore"
)

// TestCanSee walks the history visibility algorithm (client-server API, "History visibility")
// for a user invited at 10, joined at 20 and gone at 30.
func TestCanSee(t *testing.T) {
	v := &viewer{user: "@bob:x", hist: []syncstore.Membership{{Pos: 10, Membership: "invite"}, {Pos: 20, Membership: "join"}, {Pos: 30, Membership: "leave"}}}
	msg := func(pos int64, vis string) *syncstore.Event {
		return &syncstore.Event{Pos: pos, Type: "m.room.message", Visibility: vis}
	}
	own := func(pos int64) *syncstore.Event {
		sk := "@bob:x"
		return &syncstore.Event{Pos: pos, Type: "m.room.member", StateKey: &sk, Visibility: "joined"}
	}
	for _, c := range []struct {
		e    *syncstore.Event
		want bool
	}{
		{msg(5, "world_readable"), true}, {msg(35, "world_readable"), true},
		{msg(5, "shared"), true}, {msg(15, "shared"), true}, {msg(25, "shared"), true}, {msg(35, "shared"), false},
		{msg(5, "invited"), false}, {msg(15, "invited"), true}, {msg(25, "invited"), true}, {msg(35, "invited"), false},
		{msg(5, "joined"), false}, {msg(15, "joined"), false}, {msg(25, "joined"), true}, {msg(35, "joined"), false},
		{own(20), true}, {own(30), true}, // the user's own member events
		{msg(20, "joined"), false}, // sent at the join's position by another writer: before it
	} {
		if got := v.canSee(c.e); got != c.want {
			t.Errorf("event at %d (%s, %s): canSee %v, want %v", c.e.Pos, c.e.Type, c.e.Visibility, got, c.want)
		}
	}
}
