package stateres

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// scenario builds a small DAG and says what resolving its forks' states must give.
type scenario struct {
	name     string
	versions []id.RoomVersion
	build    func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want)
}

var (
	v2Versions  = []id.RoomVersion{id.RoomV2, id.RoomV10, id.RoomV11, id.RoomV12}
	allVersions = []id.RoomVersion{id.RoomV1, id.RoomV2, id.RoomV10, id.RoomV11, id.RoomV12}
)

// users builds a power levels users map from user, level pairs.
func users(kv ...any) map[id.UserID]int {
	m := map[id.UserID]int{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(id.UserID)] = kv[i+1].(int)
	}
	return m
}

var scenarios = []scenario{
	{
		// A moderator's ban races the admin's power levels change that demotes the moderator:
		// the admin's change sorts first (greater power), and the ban no longer passes.
		name:     "ban races power levels change",
		versions: allVersions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			f.member("charlie-join", charlie, charlie, "join")
			a, b := f.branch(), f.branch()
			a.powerLevels("pl-demote", alice, users(bob, 0))
			b.member("ban-charlie", bob, charlie, "ban")
			return r, []StateMap{a.state, b.state}, want{plKey: "pl-demote", memberKey(charlie): "charlie-join"}
		},
	},
	{
		// Without the demotion the ban stands.
		name:     "ban against unchanged power levels",
		versions: allVersions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			f.member("charlie-join", charlie, charlie, "join")
			a, b := f.branch(), f.branch()
			a.topic("topic-alice", alice, "hello")
			b.member("ban-charlie", bob, charlie, "ban")
			return r, []StateMap{a.state, b.state}, want{plKey: "pl0", memberKey(charlie): "ban-charlie", topicKey: "topic-alice"}
		},
	},
	{
		// Bob sets the topic on a fork that has not seen his demotion: the resolved power
		// levels make his change invalid, and the topic stays the one before.
		name:     "topic reset by power levels change",
		versions: allVersions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			f.topic("topic0", alice, "zero")
			a, b := f.branch(), f.branch()
			a.powerLevels("pl-demote", alice, users(bob, 0))
			b.topic("topic-bob", bob, "bob's")
			return r, []StateMap{a.state, b.state}, want{plKey: "pl-demote", topicKey: "topic0"}
		},
	},
	{
		// Both topics are valid. The one sent after the newer power levels event is closer
		// to the mainline's head and is applied last although its timestamp is earlier.
		name:     "mainline position beats timestamp",
		versions: v2Versions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.powerLevels("pl1", alice, users(bob, 50, charlie, 10))
			a.sendAt("topic-a", 5000, alice, "m.room.topic", "", map[string]any{"topic": "a"})
			b.sendAt("topic-b", 9000, bob, "m.room.topic", "", map[string]any{"topic": "b"})
			return r, []StateMap{a.state, b.state}, want{plKey: "pl1", topicKey: "topic-a"}
		},
	},
	{
		// Same mainline position: the later timestamp is applied last and wins.
		name:     "same mainline position: timestamp",
		versions: v2Versions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.sendAt("topic-a", 9000, alice, "m.room.topic", "", map[string]any{"topic": "a"})
			b.sendAt("topic-b", 5000, bob, "m.room.topic", "", map[string]any{"topic": "b"})
			return r, []StateMap{a.state, b.state}, want{topicKey: "topic-a"}
		},
	},
	{
		// Same mainline position and timestamp: the greater event ID is applied last.
		name:     "same mainline position and timestamp: event ID",
		versions: v2Versions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.sendAt("topic-y", 5000, alice, "m.room.topic", "", map[string]any{"topic": "y"})
			b.sendAt("topic-x", 5000, bob, "m.room.topic", "", map[string]any{"topic": "x"})
			return r, []StateMap{a.state, b.state}, want{topicKey: "topic-y"}
		},
	},
	{
		// The join rules change to invite sorts before Eve's join (power events first), which
		// then fails and leaves no membership for Eve (from v2).
		name:     "join rules change races a join",
		versions: allVersions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, nil)
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.send("jr-invite", alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
			b.member("eve-join", eve, eve, "join")
			if v.StateResVersion() == id.StateResV1 {
				// v1 only resolves keys for which the states hold different events; Eve's
				// membership is in one state only, so it is not a conflict and is kept.
				return r, []StateMap{a.state, b.state}, want{jrKey: "jr-invite", memberKey(eve): "eve-join"}
			}
			return r, []StateMap{a.state, b.state}, want{jrKey: "jr-invite", memberKey(eve): ""}
		},
	},
	{
		// Concurrent power levels changes by a 100 and a 75: the 100's sorts first, the 75's
		// is checked against it and, being allowed, is applied last.
		name:     "power levels: greater sender power sorts first",
		versions: []id.RoomVersion{id.RoomV2, id.RoomV10, id.RoomV11},
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 75))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			b.sendAt("pl-bob", 1, bob, "m.room.power_levels", "", plContent(v, users(bob, 75, dave, 50)))
			a.sendAt("pl-alice", 9000, alice, "m.room.power_levels", "", plContent(v, users(bob, 75, charlie, 50)))
			return r, []StateMap{a.state, b.state}, want{plKey: "pl-bob"}
		},
	},
	{
		// As above, but alice's change demotes bob, so his change fails against it.
		name:     "power levels: demoted sender's change fails",
		versions: []id.RoomVersion{id.RoomV2, id.RoomV10, id.RoomV11},
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 75))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			b.sendAt("pl-bob", 1, bob, "m.room.power_levels", "", plContent(v, users(bob, 75, dave, 50)))
			a.sendAt("pl-alice", 9000, alice, "m.room.power_levels", "", plContent(v, users(bob, 0)))
			return r, []StateMap{a.state, b.state}, want{plKey: "pl-alice"}
		},
	},
	{
		// Equal power: the earlier timestamp sorts first, the later change is applied last.
		name:     "power levels: equal power, timestamp",
		versions: []id.RoomVersion{id.RoomV2, id.RoomV10, id.RoomV11},
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 100))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.sendAt("pl-alice", 5000, alice, "m.room.power_levels", "", plContent(v, users(bob, 100, charlie, 50)))
			b.sendAt("pl-bob", 4000, bob, "m.room.power_levels", "", plContent(v, users(bob, 100, dave, 50)))
			return r, []StateMap{a.state, b.state}, want{plKey: "pl-alice"}
		},
	},
	{
		// Equal power and timestamp: the smaller event ID sorts first.
		name:     "power levels: equal power and timestamp, event ID",
		versions: []id.RoomVersion{id.RoomV2, id.RoomV10, id.RoomV11},
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 100))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.sendAt("pl-x", 5000, alice, "m.room.power_levels", "", plContent(v, users(bob, 100, charlie, 50)))
			b.sendAt("pl-y", 5000, bob, "m.room.power_levels", "", plContent(v, users(bob, 100, dave, 50)))
			return r, []StateMap{a.state, b.state}, want{plKey: "pl-y"}
		},
	},
	{
		// Unconflicted state is kept even where the resolved power levels would not allow it
		// (bob's topic after his demotion), and every unconflicted key is in the result.
		name:     "unconflicted state passes through",
		versions: allVersions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			f.topic("topic-bob", bob, "bob's")
			a, b := f.branch(), f.branch()
			a.powerLevels("pl-demote", alice, users(bob, 0))
			b.member("charlie-join", charlie, charlie, "join")
			w := want{plKey: "pl-demote", memberKey(charlie): "charlie-join", topicKey: "topic-bob"}
			for k, e := range f.state {
				if k != plKey {
					w[k] = r.nameOf(e)
				}
			}
			return r, []StateMap{a.state, b.state}, w
		},
	},
	{
		// A kick is a power event: alice's kick of bob sorts before bob's concurrent power
		// levels change, which then fails because bob has left.
		name:     "kick sorts before the kicked user's power levels change",
		versions: v2Versions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 75))
			f.member("bob-join", bob, bob, "join")
			a, b := f.branch(), f.branch()
			a.member("kick-bob", alice, bob, "leave")
			b.powerLevels("pl-bob", bob, users(bob, 75, dave, 50))
			return r, []StateMap{a.state, b.state}, want{plKey: "pl0", memberKey(bob): "kick-bob"}
		},
	},
	{
		// An event of the full conflicted set takes an unconflicted key (the older join rules
		// that eve's join cites) during the iterative auth checks; step 5 puts the unconflicted
		// event back.
		name:     "unconflicted state map wins in the end",
		versions: v2Versions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, nil)
			f.member("bob-join", bob, bob, "join")
			f.send("jr1", alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
			f.member("eve-join", eve, eve, "join")
			f.send("jr2", alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
			// The other state does not hold eve's join, so nothing in it cites jr1.
			s2 := maps.Clone(f.state)
			delete(s2, memberKey(eve))
			return r, []StateMap{f.state, s2}, want{jrKey: "jr2", memberKey(eve): "eve-join"}
		},
	},
	{
		// The join rules change to invite is in both auth chains and in no state conflict, but
		// lies on the auth path from eve's invite to the conflicted power levels: in v2.1 the
		// conflicted state subgraph brings it into the checks, so frank's stale join (citing the
		// public join rules) fails against it as it does in v2, where it is unconflicted state.
		name:     "conflicted state subgraph",
		versions: v2Versions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 100))
			f.member("bob-join", bob, bob, "join")
			stale := f.branch()
			f.send("jr-invite", alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
			f.member("charlie-invite", alice, charlie, "invite")
			f.member("charlie-join", charlie, charlie, "join")
			a, b := f.branch(), f.branch()
			a.powerLevels("pl1", alice, users(bob, 100, dave, 10))
			b.member("eve-invite", bob, eve, "invite")
			stale.member("frank-join", "@frank:f.test", "@frank:f.test", "join")
			s1 := maps.Clone(a.state)
			s1[memberKey("@frank:f.test")] = r.id("frank-join")
			return r, []StateMap{s1, b.state}, want{plKey: "pl1", jrKey: "jr-invite",
				memberKey(eve): "eve-invite", memberKey("@frank:f.test"): ""}
		},
	},
	{
		// Three forks at once.
		name:     "three state sets",
		versions: allVersions,
		build: func(t *testing.T, v id.RoomVersion) (*room, []StateMap, want) {
			r, f := newRoom(t, v, nil, users(bob, 50))
			f.member("bob-join", bob, bob, "join")
			f.member("charlie-join", charlie, charlie, "join")
			a, b, c := f.branch(), f.branch(), f.branch()
			a.powerLevels("pl-demote", alice, users(bob, 0))
			b.member("ban-charlie", bob, charlie, "ban")
			c.member("dave-join", dave, dave, "join")
			return r, []StateMap{a.state, b.state, c.state},
				want{plKey: "pl-demote", memberKey(charlie): "charlie-join", memberKey(dave): "dave-join"}
		},
	},
}

// plContent is power levels content with alice at 100 before v12 and the given users.
func plContent(v id.RoomVersion, u map[id.UserID]int) map[string]any {
	m := map[string]int{}
	if !v.PrivilegedRoomCreators() {
		m[string(alice)] = 100
	}
	for k, l := range u {
		m[string(k)] = l
	}
	return map[string]any{"users": m, "state_default": 50, "ban": 50, "kick": 50, "redact": 50}
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios {
		for _, v := range sc.versions {
			t.Run(sc.name+"/v"+string(v), func(t *testing.T) {
				r, sets, exp := sc.build(t, v)
				r.check(t, sets, exp)
			})
		}
	}
}

// TestDeterministic resolves every scenario with the sets in every order and the storage's
// answers shuffled, and expects one result.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sc := range scenarios {
		for _, v := range sc.versions {
			r, sets, _ := sc.build(t, v)
			first, err := Resolve(context.Background(), v, sets, r.events)
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				s := slices.Clone(sets)
				rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
				got, err := Resolve(context.Background(), v, s, shuffled{Events: r.events, rng: rng})
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, first) {
					t.Fatalf("%s v%s: result depends on order:\n%v\n%v", sc.name, v, got, first)
				}
			}
		}
	}
}

func TestZeroAndOneSets(t *testing.T) {
	r, f := newRoom(t, id.RoomV11, nil, nil)
	got, err := Resolve(context.Background(), id.RoomV11, nil, r.events)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no sets: got %v, %v; want empty map", got, err)
	}
	got, err = Resolve(context.Background(), id.RoomV11, []StateMap{f.state}, r.events)
	if err != nil || !maps.Equal(got, f.state) {
		t.Fatalf("one set: got %v, %v; want %v", got, err, f.state)
	}
	got[plKey] = "$changed"
	if f.state[plKey] == "$changed" {
		t.Fatal("one set: result shares the input map")
	}
	got, err = Resolve(context.Background(), id.RoomV11, []StateMap{f.state, maps.Clone(f.state)}, r.events)
	if err != nil || !maps.Equal(got, f.state) {
		t.Fatalf("identical sets: got %v, %v", got, err)
	}
}

func TestUnknownVersion(t *testing.T) {
	_, err := Resolve(context.Background(), "org.example.custom", []StateMap{{}, {}}, NewMemoryEvents())
	if !errors.Is(err, id.ErrUnknownRoomVersion) {
		t.Fatalf("got %v, want id.ErrUnknownRoomVersion", err)
	}
}

func TestMissingEvent(t *testing.T) {
	r, f := newRoom(t, id.RoomV11, nil, nil)
	a, b := f.branch(), f.branch()
	a.topic("topic-a", alice, "a")
	b.topic("topic-b", alice, "b")
	events := NewMemoryEvents()
	for _, ev := range r.byName {
		if ev.typ != "m.room.topic" {
			events.Add(ev)
		}
	}
	_, err := Resolve(context.Background(), id.RoomV11, []StateMap{a.state, b.state}, events)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

func TestCancelled(t *testing.T) {
	r, f := newRoom(t, id.RoomV11, nil, nil)
	a, b := f.branch(), f.branch()
	a.topic("topic-a", alice, "a")
	b.topic("topic-b", alice, "b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Resolve(ctx, id.RoomV11, []StateMap{a.state, b.state}, r.events); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
