package stateres

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// v1 resolves other conflicts by depth (deepest first), where v2 uses the mainline and the
// timestamp: the same forks resolve differently.
func TestV1DepthBeatsTimestamp(t *testing.T) {
	for _, tc := range []struct {
		v    id.RoomVersion
		want string
	}{
		{id.RoomV1, "topic-b2"},
		{id.RoomV2, "topic-a"},
	} {
		t.Run("v"+string(tc.v), func(t *testing.T) {
			r, f := newRoom(t, tc.v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.sendAt("topic-a", 9000, alice, "m.room.topic", "", map[string]any{"topic": "a"})
			b.sendAt("topic-b1", 5000, bob, "m.room.topic", "", map[string]any{"topic": "b1"})
			b.sendAt("topic-b2", 5001, bob, "m.room.topic", "", map[string]any{"topic": "b2"})
			r.check(t, []StateMap{a.state, b.state}, want{topicKey: tc.want})
		})
	}
}

// Other conflicts at one depth go to the lowest sha1(event_id): of topic-2 (74b8…), topic-3
// (15f2…) and topic-4 (5cb4…), topic-3, which is neither the smallest nor the greatest ID.
func TestV1Sha1TieBreak(t *testing.T) {
	r, f := newRoom(t, id.RoomV1, nil, nil)
	var sets []StateMap
	for _, n := range []string{"topic-2", "topic-3", "topic-4"} {
		b := f.branch()
		b.topic(n, alice, n)
		sets = append(sets, b.state)
	}
	r.check(t, sets, want{topicKey: "topic-3"})
}

// The order of an auth conflict's list: ascending depth, then descending sha1(event_id).
func TestV1Order(t *testing.T) {
	r, f := newRoom(t, id.RoomV1, nil, nil)
	var ids []id.EventID
	for _, n := range []string{"topic-1", "topic-2", "topic-3", "topic-4"} {
		ids = append(ids, f.branch().topic(n, alice, n))
	}
	deep := f.branch()
	deep.topic("x", alice, "x")
	ids = append(ids, deep.topic("topic-0", alice, "deeper"))
	res := newResolver(context.Background(), id.RoomV1, r.events)
	evs, err := res.v1Sorted(ids)
	if err != nil {
		t.Fatal(err)
	}
	var got []id.EventID
	for _, e := range evs {
		got = append(got, e.ev.EventID())
	}
	// sha1: topic-1 7ff7…, topic-2 74b8…, topic-4 5cb4…, topic-3 15f2…
	w := []id.EventID{r.id("topic-1"), r.id("topic-2"), r.id("topic-4"), r.id("topic-3"), r.id("topic-0")}
	if !slices.Equal(got, w) {
		t.Fatalf("got %v, want %v", got, w)
	}
}

// Power levels conflicts: the shallowest goes into R, each deeper one only if R allows it, and
// the first refused stops the list.
func TestV1PowerLevels(t *testing.T) {
	t.Run("deeper change refused", func(t *testing.T) {
		r, f := newRoom(t, id.RoomV1, nil, users(bob, 75))
		f.member("bob-join", bob, bob, "join")
		a, b := f.branch(), f.branch()
		a.powerLevels("pl-demote", alice, users(bob, 0))
		b.topic("topic-bob", bob, "t")
		b.powerLevels("pl-bob", bob, users(bob, 75, dave, 50))
		r.check(t, []StateMap{a.state, b.state}, want{plKey: "pl-demote", topicKey: "topic-bob"})
	})
	t.Run("deeper change allowed", func(t *testing.T) {
		r, f := newRoom(t, id.RoomV1, nil, users(bob, 75))
		f.member("bob-join", bob, bob, "join")
		a, b := f.branch(), f.branch()
		a.topic("topic-alice", alice, "t")
		a.powerLevels("pl-demote", alice, users(bob, 0))
		b.powerLevels("pl-bob", bob, users(bob, 75, dave, 50))
		r.check(t, []StateMap{a.state, b.state}, want{plKey: "pl-demote"})
	})
	t.Run("list stops at the first refusal", func(t *testing.T) {
		r, f := newRoom(t, id.RoomV1, nil, users(bob, 75))
		f.member("bob-join", bob, bob, "join")
		a, b, c := f.branch(), f.branch(), f.branch()
		a.powerLevels("pl-demote", alice, users(bob, 0))
		b.topic("topic-bob", bob, "t")
		b.powerLevels("pl-bob", bob, users(bob, 75, dave, 50))
		c.topic("topic-alice1", alice, "t1")
		c.topic("topic-alice2", alice, "t2")
		c.powerLevels("pl-alice", alice, users(bob, 75, dave, 20))
		r.check(t, []StateMap{a.state, b.state, c.state}, want{plKey: "pl-demote"})
	})
	t.Run("membership checked against resolved power levels", func(t *testing.T) {
		r, f := newRoom(t, id.RoomV1, nil, users(bob, 75))
		f.member("bob-join", bob, bob, "join")
		f.member("charlie-join", charlie, charlie, "join")
		a, b := f.branch(), f.branch()
		a.powerLevels("pl-demote", alice, users(bob, 0))
		b.member("kick-charlie", bob, charlie, "leave")
		r.check(t, []StateMap{a.state, b.state}, want{plKey: "pl-demote", memberKey(charlie): "charlie-join"})
	})
}

// When no candidate of an ordinary conflict passes, v1 adds none of them, and v2 drops them all
// in the iterative auth checks: the key disappears from the state.
func TestNoCandidatePasses(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.topic("topic-a", bob, "a")
			a.powerLevels("pl-demote", alice, users(bob, 0))
			b.topic("topic-b", bob, "b")
			r.check(t, []StateMap{a.state, b.state}, want{plKey: "pl-demote", topicKey: ""})
		})
	}
}
