package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

const (
	localServer  = "example.test"
	remoteServer = "remote.test"
	alice        = id.UserID("@alice:example.test")
	bob          = id.UserID("@bob:remote.test")
	carol        = id.UserID("@carol:remote.test")
	dave         = id.UserID("@dave:remote.test")
	mallory      = id.UserID("@mallory:remote.test")
)

// keyRing is an in-memory pdu.KeyRing: server → key ID → public key.
type keyRing map[string]map[string]ed25519.PublicKey

var errUnknownKey = errors.New("unknown key")

func (k keyRing) VerifyKey(_ context.Context, server, keyID string, _ int64) (ed25519.PublicKey, error) {
	if pub, ok := k[server][keyID]; ok {
		return pub, nil
	}
	return nil, fmt.Errorf("%w %s of %s", errUnknownKey, keyID, server)
}

func (k keyRing) add(server string, key *federation.SigningKey) {
	if k[server] == nil {
		k[server] = map[string]ed25519.PublicKey{}
	}
	k[server][string(key.ID)] = key.Priv.Public().(ed25519.PublicKey)
}

// fed is a local roomserver with a room created by alice, and a remote server that builds
// events for it.
type fed struct {
	t       testing.TB
	ctx     context.Context
	db      *storage.DB
	rs      *Roomserver
	nf      *notifier.Notifier
	remote  *federation.SigningKey
	version id.RoomVersion
	roomID  id.RoomID
	ts      int64
}

func newFed(t testing.TB, db *storage.DB, version id.RoomVersion) *fed {
	t.Helper()
	ctx := context.Background()
	local, remote := federation.GenerateSigningKey(), federation.GenerateSigningKey()
	ring := keyRing{}
	ring.add(localServer, local)
	ring.add(remoteServer, remote)
	nf := notifier.New()
	rs, err := New(ctx, db, Options{ServerName: localServer, SigningKey: local, Notifier: nf, KeyRing: ring})
	if err != nil {
		t.Fatal(err)
	}
	f := &fed{t: t, ctx: ctx, db: db, rs: rs, nf: nf, remote: remote, version: version, ts: 1_700_000_000_000}
	if version != "" {
		if f.roomID, err = rs.CreateRoom(ctx, CreateRoomRequest{Creator: alice, Version: version, Preset: PresetPublicChat}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// state is the room's current state.
func (f *fed) state() map[auth.StateKey]*pdu.Event {
	f.t.Helper()
	st, err := f.rs.CurrentState(f.ctx, f.roomID)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// extremities are the room's forward extremities as stored.
func (f *fed) extremities() []*pdu.Event {
	f.t.Helper()
	room, err := f.rs.store.Room(f.ctx, f.db, string(f.roomID))
	if err != nil {
		f.t.Fatal(err)
	}
	nids, err := f.rs.store.ForwardExtremities(f.ctx, f.db, room.NID)
	if err != nil {
		f.t.Fatal(err)
	}
	evs, err := f.rs.eventsByNID(f.ctx, nids)
	if err != nil {
		f.t.Fatal(err)
	}
	out := make([]*pdu.Event, 0, len(evs))
	for _, n := range nids {
		out = append(out, evs[n])
	}
	return out
}

func (f *fed) extremityIDs() []id.EventID {
	var out []id.EventID
	for _, e := range f.extremities() {
		out = append(out, e.EventID())
	}
	slices.Sort(out)
	return out
}

// header returns what the store knows of an event, nil if it is not stored.
func (f *fed) header(eventID id.EventID) *roomstore.Event {
	f.t.Helper()
	hs, err := f.rs.store.EventHeadersByID(f.ctx, f.db, []string{string(eventID)})
	if err != nil {
		f.t.Fatal(err)
	}
	if len(hs) == 0 {
		return nil
	}
	return hs[0]
}

// build makes an event of remote.test on prevs, with auth events chosen from state as a server
// would (server-server API, "Auth events selection").
func (f *fed) build(sender id.UserID, typ string, stateKey *string, content string, prevs []*pdu.Event, state map[auth.StateKey]*pdu.Event) *pdu.Event {
	f.t.Helper()
	return f.buildWith(f.remote, sender, typ, stateKey, content, prevs, state)
}

func (f *fed) buildWith(key *federation.SigningKey, sender id.UserID, typ string, stateKey *string, content string, prevs []*pdu.Event, state map[auth.StateKey]*pdu.Event) *pdu.Event {
	f.t.Helper()
	t := Template{Type: typ, StateKey: stateKey, Sender: sender, Content: json.RawMessage(content)}
	var authIDs []id.EventID
	for _, k := range auth.Selection(&templateEvent{t: t, roomID: f.roomID, version: f.version}) {
		if ev := state[k]; ev != nil {
			authIDs = append(authIDs, ev.EventID())
		}
	}
	var prevIDs []id.EventID
	var depth int64
	for _, p := range prevs {
		prevIDs = append(prevIDs, p.EventID())
		depth = max(depth, p.Depth())
	}
	f.ts += 1000
	ev, err := pdu.Build(f.version, pdu.Template{Type: typ, StateKey: stateKey, Sender: sender, Content: json.RawMessage(content),
		RoomID: f.roomID, PrevEvents: prevIDs, AuthEvents: authIDs, Depth: depth + 1, OriginServerTS: f.ts}, remoteServer, key)
	if err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func (f *fed) join(user id.UserID, prevs []*pdu.Event, state map[auth.StateKey]*pdu.Event) *pdu.Event {
	return f.build(user, "m.room.member", ptr(string(user)), `{"membership":"join"}`, prevs, state)
}

func (f *fed) message(user id.UserID, body string, prevs []*pdu.Event, state map[auth.StateKey]*pdu.Event) *pdu.Event {
	return f.build(user, "m.room.message", nil, fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body), prevs, state)
}

// input takes a remote event in on the current extremities and fails the test on error.
func (f *fed) input(ev *pdu.Event) {
	f.t.Helper()
	if err := f.rs.InputRemote(f.ctx, ev, nil); err != nil {
		f.t.Fatalf("input %s %s: %v", ev.Type(), ev.EventID(), err)
	}
}

// joinNow builds a join of user on the current extremities and state and takes it in.
func (f *fed) joinNow(user id.UserID) *pdu.Event {
	f.t.Helper()
	ev := f.join(user, f.extremities(), f.state())
	f.input(ev)
	return ev
}

// sendNow builds a remote message on the current extremities and state and takes it in.
func (f *fed) sendNow(user id.UserID, body string) *pdu.Event {
	f.t.Helper()
	ev := f.message(user, body, f.extremities(), f.state())
	f.input(ev)
	return ev
}

// output returns the IDs of the events on the output stream after position since.
func (f *fed) output(since int64) []id.EventID {
	f.t.Helper()
	evs, err := f.rs.store.OutputSince(f.ctx, f.db, since, 1000)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []id.EventID
	for _, e := range evs {
		out = append(out, id.EventID(e.EventID))
	}
	return out
}

func (f *fed) latest() int64 { return f.nf.Latest(roomstore.StreamOutput) }

// plContent returns power levels content naming users at 100 (alice too before v12, where
// creators are not listed) with the given state_default.
func plContent(version id.RoomVersion, stateDefault int, users ...id.UserID) string {
	u := map[id.UserID]int{}
	if !version.PrivilegedRoomCreators() {
		u[alice] = 100
	}
	for _, x := range users {
		u[x] = 100
	}
	b, _ := json.Marshal(map[string]any{"users": u, "state_default": stateDefault, "events_default": 0, "ban": 50, "kick": 50,
		"redact": 50, "invite": 0, "events": map[string]int{"m.room.power_levels": 100}})
	return string(b)
}

func eventIDs(evs ...*pdu.Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID()
	}
	slices.Sort(out)
	return out
}

// versions are the room versions the federation tests run in: the v2 state resolution and its
// v12 revision, where the room ID names the create event.
var versions = []id.RoomVersion{id.RoomV10, id.RoomV12}
