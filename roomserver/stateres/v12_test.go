package stateres

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// An additional creator's unlimited power sorts their power levels change before that of a
// user at 100, who is demoted by it; in v11, where bob is merely at 100, the earlier change is
// applied first and the later one fails instead.
func TestCreatorsWinPowerLevelsRace(t *testing.T) {
	for _, tc := range []struct {
		v    id.RoomVersion
		want string
	}{
		{id.RoomV12, "pl-bob"},
		{id.RoomV11, "pl-charlie"},
	} {
		t.Run("v"+string(tc.v), func(t *testing.T) {
			var extra map[string]any
			u := users(charlie, 100)
			if tc.v.PrivilegedRoomCreators() {
				extra = map[string]any{"additional_creators": []id.UserID{bob}}
			} else {
				u[bob] = 100
			}
			r, f := newRoom(t, tc.v, extra, u)
			f.member("bob-join", bob, bob, "join")
			f.member("charlie-join", charlie, charlie, "join")
			f.member("dave-join", dave, dave, "join")
			a, b := f.branch(), f.branch()
			cu, bu := maps.Clone(u), maps.Clone(u)
			cu[dave] = 50
			bu[charlie] = 0
			a.sendAt("pl-charlie", 2000, charlie, "m.room.power_levels", "", plContent(tc.v, cu))
			b.sendAt("pl-bob", 3000, bob, "m.room.power_levels", "", plContent(tc.v, bu))
			r.check(t, []StateMap{a.state, b.state}, want{plKey: tc.want})
		})
	}
}

// v2.1 runs the iterative auth checks from the empty state (rooms/v12.md "Algorithm" step 2).
// Bob changed the power levels and then left; another state holds alice's concurrent change and
// the same leave. In v2 bob's change is checked against the unconflicted leave and fails; in
// v2.1 his membership comes from the change's own auth events, and it is applied after alice's.
func TestEmptyStartIterativeChecks(t *testing.T) {
	for _, tc := range []struct {
		v    id.RoomVersion
		want string
	}{
		{id.RoomV12, "pl-bob"},
		{id.RoomV11, "pl-alice"},
	} {
		t.Run("v"+string(tc.v), func(t *testing.T) {
			r, f := newRoom(t, tc.v, nil, users(bob, 100))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			b.sendAt("pl-alice", 2000, alice, "m.room.power_levels", "", plContent(tc.v, users(bob, 100, dave, 50)))
			a.sendAt("pl-bob", 3000, bob, "m.room.power_levels", "", plContent(tc.v, users(bob, 100, charlie, 50)))
			a.member("bob-leave", bob, bob, "leave")
			// The second state is one a server may hold after its own resolution: alice's
			// power levels and bob's leave.
			s2 := maps.Clone(b.state)
			s2[memberKey(bob)] = r.id("bob-leave")
			r.check(t, []StateMap{a.state, s2}, want{plKey: tc.want, memberKey(bob): "bob-leave"})
		})
	}
}

// In v2.1 an unconflicted power levels event is not in the partially resolved state, so the
// mainline is empty and the remaining events are ordered by timestamp alone; in v2 the later
// topic, which cites the older power levels, sorts first and loses.
func TestEmptyStartMainline(t *testing.T) {
	for _, tc := range []struct {
		v    id.RoomVersion
		want string
	}{
		{id.RoomV12, "topic-b"},
		{id.RoomV11, "topic-a"},
	} {
		t.Run("v"+string(tc.v), func(t *testing.T) {
			r, f := newRoom(t, tc.v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			b := f.branch()
			f.powerLevels("pl1", alice, users(bob, 50, charlie, 10))
			f.member("charlie-join", charlie, charlie, "join")
			a := f.branch()
			a.sendAt("topic-a", 5000, alice, "m.room.topic", "", map[string]any{"topic": "a"})
			b.sendAt("topic-b", 9000, bob, "m.room.topic", "", map[string]any{"topic": "b"})
			// Both states hold pl1 and charlie's join, which cites it, so pl1 is neither
			// conflicted nor in the auth difference: b's holder learnt of them without
			// resolving its topic.
			s2 := maps.Clone(b.state)
			s2[plKey] = r.id("pl1")
			s2[memberKey(charlie)] = r.id("charlie-join")
			r.check(t, []StateMap{a.state, s2}, want{plKey: "pl1", topicKey: tc.want})
		})
	}
}

// A rejected auth event is not used when the state lacks the key (rooms/v2.md "Rejected
// events"): with bob's join rejected, his power levels change has no membership to pass with.
func TestRejectedAuthEvent(t *testing.T) {
	r, f := newRoom(t, id.RoomV12, nil, nil)
	f.member("bob-join", bob, bob, "join")
	f.powerLevels("pl1", alice, users(bob, 100))
	// Bob's name event puts his join into every state's auth chain, out of the auth difference;
	// and his join is on no auth path between conflicted events (pl-bob, pl1), so it is not in
	// the conflicted state subgraph either: nothing re-checks it.
	f.send("name-bob", bob, "m.room.name", "", map[string]any{"name": "n"})
	a, b := f.branch(), f.branch()
	a.powerLevels("pl-bob", bob, users(bob, 100, charlie, 50))
	b.topic("topic", alice, "t")
	r.check(t, []StateMap{a.state, b.state}, want{plKey: "pl-bob"})
	r.events.Reject(r.id("bob-join"))
	r.check(t, []StateMap{a.state, b.state}, want{plKey: "pl1"})
}

// The conflicted state subgraph holds the events on auth_events paths between conflicted
// events, endpoints included (rooms/v12.md "Conflicted state subgraph").
func TestConflictedSubgraph(t *testing.T) {
	// c1 -> a -> b -> c2 -> y, c1 -> z, and c3 alone.
	evs := map[string][]string{"c1": {"a", "z"}, "a": {"b"}, "b": {"c2"}, "c2": {"y"}, "z": nil, "y": nil, "c3": {"y"}}
	m := NewMemoryEvents()
	for name, auths := range evs {
		m.Add(synthetic(name, auths...))
	}
	r := newResolver(context.Background(), id.RoomV12, m)
	got, err := r.conflictedSubgraph(map[id.EventID]struct{}{"$c1": {}, "$c2": {}, "$c3": {}})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if w := []id.EventID{"$a", "$b", "$c2"}; !slices.Equal(got, w) {
		t.Fatalf("got %v, want %v", got, w)
	}
}

// An event sorts after every event of the set in its auth chain, also when the auth_events path
// between them leaves the set (rooms/v2.md "Reverse topological power ordering").
func TestAncestorsOutsideSet(t *testing.T) {
	m := NewMemoryEvents(synthetic("x", "a"), synthetic("a", "y"), synthetic("y"), synthetic("w", "y"))
	r := newResolver(context.Background(), id.RoomV11, m)
	set := map[id.EventID]struct{}{"$x": {}, "$y": {}, "$w": {}}
	x, _ := m.Event(context.Background(), "$x")
	got, err := r.ancestorsIn(x, set)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []id.EventID{"$y"}) {
		t.Fatalf("got %v, want [$y]", got)
	}
}

// The ordering itself: x's auth chain holds y only through a, outside the set, so x must come
// after y although its timestamp is the smallest.
func TestPowerOrderPathOutsideSet(t *testing.T) {
	x, a, y, w := synthetic("x", "a"), synthetic("a", "y"), synthetic("y"), synthetic("w")
	x.ts, y.ts, w.ts = 1, 5, 3
	r := newResolver(context.Background(), id.RoomV11, NewMemoryEvents(x, a, y, w))
	order, err := r.reverseTopologicalPowerOrder(map[id.EventID]struct{}{"$x": {}, "$y": {}, "$w": {}})
	if err != nil {
		t.Fatal(err)
	}
	var got []id.EventID
	for _, ev := range order {
		got = append(got, ev.EventID())
	}
	if w := []id.EventID{"$w", "$y", "$x"}; !slices.Equal(got, w) {
		t.Fatalf("got %v, want %v", got, w)
	}
}

// synthetic is a state event with the given auth events and nothing else of interest.
func synthetic(name string, auths ...string) *testEvent {
	sk := name
	ev := &testEvent{id: id.EventID("$" + name), roomID: "!room", typ: "org.example.x", stateKey: &sk,
		sender: alice, content: json.RawMessage(`{}`), version: id.RoomV12}
	for _, a := range auths {
		ev.authIDs = append(ev.authIDs, id.EventID("$"+a))
	}
	return ev
}

func TestMemoryEventsAuthChain(t *testing.T) {
	m := NewMemoryEvents(synthetic("x", "a", "b"), synthetic("a", "c"), synthetic("b", "c"), synthetic("c"),
		synthetic("y", "b"), synthetic("z", "d"), synthetic("d"))
	ctx := context.Background()
	chain, err := m.AuthChain(ctx, []id.EventID{"$x", "$y"})
	if err != nil || !slices.Equal(chain, []id.EventID{"$a", "$b", "$c"}) {
		t.Fatalf("AuthChain: %v, %v", chain, err)
	}
	// Chains: {x,c}: a b c; {y,c}: b c; {x,y,z}: a b c d.
	diff, err := m.AuthChainDifference(ctx, [][]id.EventID{{"$x", "$c"}, {"$y", "$c"}, {"$x", "$y", "$z"}})
	if err != nil || !slices.Equal(diff, []id.EventID{"$a", "$d"}) {
		t.Fatalf("AuthChainDifference: %v, %v", diff, err)
	}
	// A set's own event can be in another set's chain only.
	diff, err = m.AuthChainDifference(ctx, [][]id.EventID{{"$a", "$y"}, {"$x", "$y"}})
	if err != nil || !slices.Equal(diff, []id.EventID{"$a"}) {
		t.Fatalf("AuthChainDifference: %v, %v", diff, err)
	}
}
