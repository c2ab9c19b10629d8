package stateres

import (
	"context"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
)

// testEvent is an auth.Event built in code.
type testEvent struct {
	id       id.EventID
	roomID   id.RoomID
	typ      string
	stateKey *string
	sender   id.UserID
	content  json.RawMessage
	prev     []id.EventID
	authIDs  []id.EventID
	depth    int64
	ts       int64
	version  id.RoomVersion
}

func (e *testEvent) EventID() id.EventID        { return e.id }
func (e *testEvent) RoomID() id.RoomID          { return e.roomID }
func (e *testEvent) Type() string               { return e.typ }
func (e *testEvent) StateKey() *string          { return e.stateKey }
func (e *testEvent) Sender() id.UserID          { return e.sender }
func (e *testEvent) Content() json.RawMessage   { return e.content }
func (e *testEvent) PrevEventIDs() []id.EventID { return e.prev }
func (e *testEvent) AuthEventIDs() []id.EventID { return e.authIDs }
func (e *testEvent) Depth() int64               { return e.depth }
func (e *testEvent) OriginServerTS() int64      { return e.ts }
func (e *testEvent) Redacts() id.EventID        { return "" }
func (e *testEvent) Version() id.RoomVersion    { return e.version }

const (
	alice   id.UserID = "@alice:a.test"
	bob     id.UserID = "@bob:b.test"
	charlie id.UserID = "@charlie:c.test"
	dave    id.UserID = "@dave:d.test"
	eve     id.UserID = "@eve:e.test"
)

// room builds a DAG of test events with their auth events chosen from the state of the fork
// they are sent on, as a server would (server-server-api.md "Auth events selection").
type room struct {
	t       testing.TB
	version id.RoomVersion
	roomID  id.RoomID
	events  *MemoryEvents
	byName  map[string]*testEvent
	ts      int64
}

// fork is a line of events and the state after its last one.
type fork struct {
	r     *room
	state StateMap
	last  []id.EventID
	depth int64
}

// newRoom creates a room by alice with the usual first events: create (with the given extra
// create content), alice's join, power levels (alice 100 plus users), public join rules.
func newRoom(t testing.TB, version id.RoomVersion, createExtra map[string]any, users map[id.UserID]int) (*room, *fork) {
	r := &room{t: t, version: version, events: NewMemoryEvents(), byName: map[string]*testEvent{}, ts: 1000}
	f := &fork{r: r, state: StateMap{}}
	if !version.RoomIDIsCreateEventID() {
		r.roomID = "!room:a.test"
	}
	content := map[string]any{"room_version": string(version)}
	if version.CreatorInContent() {
		content["creator"] = alice
	}
	maps.Copy(content, createExtra)
	create := f.send("create", alice, "m.room.create", "", content)
	if version.RoomIDIsCreateEventID() {
		r.roomID = id.RoomID("!" + string(create)[1:])
	}
	f.member("alice-join", alice, alice, "join")
	f.powerLevels("pl0", alice, users)
	f.send("jr-public", alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	return r, f
}

func (r *room) eventID(name string) id.EventID {
	if r.version.EventIDFormat() == id.EventIDFormatCustom {
		return id.EventID("$" + name + ":a.test")
	}
	return id.EventID("$" + name)
}

// branch returns a fork that continues from the same point.
func (f *fork) branch() *fork {
	return &fork{r: f.r, state: maps.Clone(f.state), last: slices.Clone(f.last), depth: f.depth}
}

// send adds an event on the fork at the next timestamp.
func (f *fork) send(name string, sender id.UserID, typ, stateKey string, content any) id.EventID {
	f.r.ts++
	return f.sendAt(name, f.r.ts, sender, typ, stateKey, content)
}

// sendAt adds an event on the fork with the given origin_server_ts.
func (f *fork) sendAt(name string, ts int64, sender id.UserID, typ, stateKey string, content any) id.EventID {
	r := f.r
	r.t.Helper()
	raw, err := json.Marshal(content)
	if err != nil {
		r.t.Fatal(err)
	}
	sk := stateKey
	ev := &testEvent{
		id: r.eventID(name), roomID: r.roomID, typ: typ, stateKey: &sk, sender: sender, content: raw,
		prev: slices.Clone(f.last), depth: f.depth + 1, ts: ts, version: r.version,
	}
	if _, dup := r.byName[name]; dup {
		r.t.Fatalf("event %s sent twice", name)
	}
	if typ != "m.room.create" {
		for _, k := range auth.Selection(ev) {
			if e, ok := f.state[k]; ok {
				ev.authIDs = append(ev.authIDs, e)
			}
		}
	}
	r.byName[name] = ev
	r.events.Add(ev)
	f.state[auth.StateKey{Type: typ, StateKey: sk}] = ev.id
	f.last = []id.EventID{ev.id}
	f.depth++
	return ev.id
}

func (f *fork) member(name string, sender, target id.UserID, membership string) id.EventID {
	return f.send(name, sender, "m.room.member", string(target), map[string]any{"membership": membership})
}

func (f *fork) powerLevels(name string, sender id.UserID, users map[id.UserID]int) id.EventID {
	u := map[string]int{}
	if !f.r.version.PrivilegedRoomCreators() {
		u[string(alice)] = 100
	}
	for k, v := range users {
		u[string(k)] = v
	}
	return f.send(name, sender, "m.room.power_levels", "", map[string]any{
		"users": u, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
	})
}

func (f *fork) topic(name string, sender id.UserID, topic string) id.EventID {
	return f.send(name, sender, "m.room.topic", "", map[string]any{"topic": topic})
}

// id returns the ID of the named event.
func (r *room) id(name string) id.EventID {
	r.t.Helper()
	ev, ok := r.byName[name]
	if !ok {
		r.t.Fatalf("no event %s", name)
	}
	return ev.id
}

// nameOf returns the name of the event with the given ID.
func (r *room) nameOf(e id.EventID) string {
	for n, ev := range r.byName {
		if ev.id == e {
			return n
		}
	}
	r.t.Fatalf("no event %s", e)
	return ""
}

// key names state keys in test expectations.
func key(typ, stateKey string) auth.StateKey { return auth.StateKey{Type: typ, StateKey: stateKey} }

var (
	plKey    = key("m.room.power_levels", "")
	jrKey    = key("m.room.join_rules", "")
	topicKey = key("m.room.topic", "")
)

func memberKey(u id.UserID) auth.StateKey { return key("m.room.member", string(u)) }

// want maps state keys to event names; a key mapped to "" must be absent.
type want map[auth.StateKey]string

// check resolves the sets and compares the named keys of the result.
func (r *room) check(t *testing.T, sets []StateMap, exp want) StateMap {
	t.Helper()
	got, err := Resolve(context.Background(), r.version, sets, r.events)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	for k, name := range exp {
		v, ok := got[k]
		switch {
		case name == "" && ok:
			t.Errorf("%v: got %s, want absent", k, v)
		case name != "" && v != r.id(name):
			t.Errorf("%v: got %q, want %s", k, v, r.id(name))
		}
	}
	return got
}

// shuffled is an Events that answers auth chain queries in random order, so that tests can see
// that nothing depends on it.
type shuffled struct {
	Events
	rng *rand.Rand
}

func (s shuffled) AuthChainDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error) {
	out, err := s.Events.AuthChainDifference(ctx, sets)
	s.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, err
}

func (s shuffled) AuthChain(ctx context.Context, ids []id.EventID) ([]id.EventID, error) {
	out, err := s.Events.AuthChain(ctx, ids)
	s.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, err
}
