package stateres

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// forkedRoom builds a room of members joined users and two forks of it that differ by 100 state
// events: on each, new users join, a member is kicked and the topic is set; on one, the power
// levels change.
func forkedRoom(b *testing.B, v id.RoomVersion, members int) (*room, []StateMap) {
	r, f := newRoom(b, v, nil, users(bob, 50))
	user := func(i int) id.UserID { return id.UserID(fmt.Sprintf("@user%05d:example.org", i)) }
	for i := range members {
		f.member(fmt.Sprintf("join-%d", i), user(i), user(i), "join")
	}
	a, c := f.branch(), f.branch()
	for i := range 48 {
		u := user(members + i)
		a.member(fmt.Sprintf("a-join-%d", i), u, u, "join")
	}
	a.member("a-kick", alice, user(1), "leave")
	a.topic("a-topic", alice, "a")
	for i := range 47 {
		u := user(members + 100 + i)
		c.member(fmt.Sprintf("c-join-%d", i), u, u, "join")
	}
	c.powerLevels("c-pl", alice, users(bob, 50, user(2), 50))
	c.member("c-kick", alice, user(3), "leave")
	c.topic("c-topic", alice, "c")
	return r, []StateMap{a.state, c.state}
}

// BenchmarkResolveForks resolves two forks of a 10 000-member room that differ by 100 state
// events. The "precomputed" runs take the auth difference as given, to show the resolution
// apart from MemoryEvents walking both 10 000-event auth chains; "authdiff" is that walk alone.
func BenchmarkResolveForks(b *testing.B) {
	ctx := context.Background()
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		r, sets := forkedRoom(b, v, 10000)
		lists := make([][]id.EventID, len(sets))
		for i, s := range sets {
			lists[i] = slices.Collect(maps.Values(s))
		}
		diff, err := r.events.AuthChainDifference(ctx, lists)
		if err != nil {
			b.Fatal(err)
		}
		want, err := Resolve(ctx, v, sets, r.events)
		if err != nil {
			b.Fatal(err)
		}
		if len(want) < 10000 {
			b.Fatalf("resolved state has %d entries", len(want))
		}
		b.Run("v"+string(v), func(b *testing.B) {
			for b.Loop() {
				if _, err := Resolve(ctx, v, sets, r.events); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("v"+string(v)+"/precomputed", func(b *testing.B) {
			for b.Loop() {
				res := newResolver(ctx, v, r.events)
				got, err := res.resolveV2(sets, v.StateResVersion() == id.StateResV2_1, diff)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != len(want) {
					b.Fatal("different result")
				}
			}
		})
		b.Run("v"+string(v)+"/authdiff", func(b *testing.B) {
			for b.Loop() {
				if _, err := r.events.AuthChainDifference(ctx, lists); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
