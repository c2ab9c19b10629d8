package roomserver

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func stateIDs(st map[auth.StateKey]*pdu.Event) map[auth.StateKey]id.EventID {
	out := make(map[auth.StateKey]id.EventID, len(st))
	for k, ev := range st {
		out[k] = ev.EventID()
	}
	return out
}

func TestQueries(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		bobKey := auth.StateKey{Type: "m.room.member", StateKey: string(bob)}
		join := f.joinNow(bob)
		var msgs []*pdu.Event
		for range 5 {
			msgs = append(msgs, f.sendNow(bob, "m"))
		}

		// State at and after events.
		before, err := f.rs.StateBefore(f.ctx, join.EventID())
		if err != nil || before[bobKey] != nil {
			t.Errorf("state before the join holds it: %v", err)
		}
		after := f.stateAfter(join)
		if after[bobKey] == nil || after[bobKey].EventID() != join.EventID() || len(after) != len(before)+1 {
			t.Errorf("state after the join: %d entries", len(after))
		}
		mb, _ := f.rs.StateBefore(f.ctx, msgs[0].EventID())
		if !maps.Equal(stateIDs(f.stateAfter(msgs[0])), stateIDs(mb)) || !maps.Equal(stateIDs(mb), stateIDs(after)) {
			t.Error("a message changed the state")
		}
		if st, err := f.rs.StateAfter(f.ctx, "$unknown"); st != nil || err != nil {
			t.Errorf("state after an unknown event: %v %v", st, err)
		}
		for _, ev := range []*pdu.Event{join, msgs[2]} {
			ids, err := f.rs.StateIDsAfter(f.ctx, ev.EventID())
			if err != nil || !maps.Equal(ids, stateIDs(f.stateAfter(ev))) {
				t.Errorf("state IDs after %s differ from the state after it: %v", ev.EventID(), err)
			}
		}
		if ids, err := f.rs.StateIDsAfter(f.ctx, "$unknown"); ids != nil || err != nil {
			t.Errorf("state IDs after an unknown event: %v %v", ids, err)
		}

		// Members by membership.
		for membership, want := range map[string][]id.UserID{"join": {alice, bob}, "": {alice, bob}, "invite": nil} {
			if got, err := f.rs.Members(f.ctx, f.roomID, membership); err != nil || !slices.Equal(got, want) {
				t.Errorf("members %q: %v %v", membership, got, err)
			}
		}
		if _, err := f.rs.Members(f.ctx, "!nope:example.test", "join"); !errors.Is(err, ErrRoomNotFound) {
			t.Errorf("members of an unknown room: %v", err)
		}

		// Auth chains, from the index for state events and through auth events for messages.
		for _, ev := range []*pdu.Event{msgs[4], join} {
			chain, err := f.rs.AuthChain(f.ctx, []id.EventID{ev.EventID()})
			if err != nil {
				t.Fatal(err)
			}
			if want := f.walkAuthChain(ev); !slices.Equal(eventIDs(chain...), want) {
				t.Errorf("auth chain of %s: %v, want %v", ev.Type(), eventIDs(chain...), want)
			}
			placed := map[id.EventID]bool{}
			for _, c := range chain {
				if c.StateKey() == nil {
					t.Errorf("auth chain holds a message")
				}
				for _, a := range c.AuthEventIDs() {
					if !placed[a] {
						t.Errorf("%s comes before its auth event %s", c.EventID(), a)
					}
				}
				placed[c.EventID()] = true
			}
		}
		both, err := f.rs.AuthChain(f.ctx, []id.EventID{msgs[4].EventID(), join.EventID()})
		if err != nil || !slices.Equal(eventIDs(both...), f.walkAuthChain(msgs[4], join)) {
			t.Errorf("auth chain of two events: %v", err)
		}
		if _, err := f.rs.AuthChain(f.ctx, []id.EventID{"$unknown"}); !errors.Is(err, ErrEventNotFound) {
			t.Errorf("auth chain of an unknown event: %v", err)
		}

		// Missing events: breadth-first back from latest, stopping at earliest and at limit.
		got, err := f.rs.MissingEvents(f.ctx, f.roomID, []id.EventID{msgs[0].EventID()}, []id.EventID{msgs[4].EventID()}, 10)
		if err != nil || !slices.Equal(ids(got), ids(msgs[1:4])) {
			t.Errorf("missing events: %v %v", ids(got), err)
		}
		got, _ = f.rs.MissingEvents(f.ctx, f.roomID, nil, []id.EventID{msgs[4].EventID()}, 2)
		if !slices.Equal(ids(got), ids(msgs[2:4])) {
			t.Errorf("missing events with limit 2: %v", ids(got))
		}
		got, _ = f.rs.MissingEvents(f.ctx, "!other:example.test", nil, []id.EventID{msgs[4].EventID()}, 2)
		if len(got) != 0 {
			t.Errorf("missing events of another room: %v", ids(got))
		}
		// A rejected event is neither returned nor walked through.
		rejected := f.message(mallory, "rejected", []*pdu.Event{msgs[4]}, f.state())
		if err := f.rs.InputRemote(f.ctx, rejected, nil); !errors.Is(err, ErrRejected) {
			t.Fatal(err)
		}
		after2 := f.message(bob, "x", []*pdu.Event{rejected, msgs[3]}, f.state())
		if err := f.rs.InputOutlier(f.ctx, after2); err != nil {
			t.Fatal(err)
		}
		got, _ = f.rs.MissingEvents(f.ctx, f.roomID, nil, []id.EventID{after2.EventID()}, 3)
		if !slices.Equal(ids(got), ids(msgs[1:4])) {
			t.Errorf("missing events past a rejected one: %v", ids(got))
		}
		if _, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.member", StateKey: ptr(string(bob)), Sender: alice, Content: json.RawMessage(`{"membership":"leave"}`)}); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.rs.Members(f.ctx, f.roomID, "leave"); !slices.Equal(got, []id.UserID{bob}) {
			t.Errorf("members who left: %v", got)
		}
	})
}

func ids(evs []*pdu.Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID()
	}
	return out
}

// walkAuthChain is the auth chain by definition: every event reachable through auth_events.
func (f *fed) walkAuthChain(evs ...*pdu.Event) []id.EventID {
	f.t.Helper()
	seen := map[id.EventID]bool{}
	var stack []id.EventID
	for _, ev := range evs {
		stack = append(stack, ev.AuthEventIDs()...)
	}
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[e] {
			continue
		}
		seen[e] = true
		ev, err := f.rs.Event(f.ctx, e)
		if err != nil || ev == nil {
			f.t.Fatalf("auth event %s: %v", e, err)
		}
		stack = append(stack, ev.AuthEventIDs()...)
	}
	return slices.Sorted(maps.Keys(seen))
}

func TestResolveSnapshots(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		f.joinNow(bob)
		f.joinNow(carol)
		base, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.power_levels", StateKey: ptr(""), Sender: alice,
			Content: json.RawMessage(plContent(f.version, 50, bob, carol))})
		if err != nil {
			t.Fatal(err)
		}
		st := f.state()
		// Branch A: bob's power levels, then a name; branch B: carol's (later) power levels,
		// then a topic, then a message whose state before is the state after the topic.
		a := f.build(bob, "m.room.power_levels", ptr(""), plContent(f.version, 60, bob, carol), []*pdu.Event{base}, st)
		b := f.build(carol, "m.room.power_levels", ptr(""), plContent(f.version, 70, bob, carol), []*pdu.Event{base}, st)
		f.input(a)
		name := f.build(bob, "m.room.name", ptr(""), `{"name":"A"}`, []*pdu.Event{a}, f.state())
		f.input(name)
		room, err := f.rs.store.Room(f.ctx, f.db, string(f.roomID))
		if err != nil {
			t.Fatal(err)
		}
		branchA := room.Snapshot
		f.input(b)
		topic := f.build(carol, "m.room.topic", ptr(""), `{"topic":"B"}`, []*pdu.Event{b}, f.stateAfter(b))
		f.input(topic)
		msg := f.message(carol, "on B", []*pdu.Event{topic}, f.stateAfter(topic))
		f.input(msg)
		branchB := f.header(msg.EventID()).StateBefore

		snap, err := f.rs.resolveSnapshots(f.ctx, f.roomID, []int64{branchA, branchB})
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.rs.loadState(f.ctx, f.version, snap)
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]*pdu.Event{"m.room.power_levels": b, "m.room.name": name, "m.room.topic": topic} {
			if got[auth.StateKey{Type: k}].EventID() != want.EventID() {
				t.Errorf("resolved %s is %s, want %s", k, got[auth.StateKey{Type: k}].EventID(), want.EventID())
			}
		}
		if !maps.Equal(stateIDs(got), stateIDs(f.state())) {
			t.Error("resolving the branches again differs from the current state")
		}
		// Stored as changes to the branch it differs least from (B lacks only the name).
		var parent int64
		if err := f.db.QueryRow(f.ctx, `SELECT parent_nid FROM room_state_snapshots WHERE snapshot_nid = $1`, snap).Scan(&parent); err != nil || parent != branchB {
			t.Errorf("resolved snapshot's parent %d, want %d (%v)", parent, branchB, err)
		}
		// A state resolved with its own ancestor is itself: the snapshot is shared.
		if again, err := f.rs.resolveSnapshots(f.ctx, f.roomID, []int64{f.header(a.EventID()).StateBefore, branchA}); err != nil || again != branchA {
			t.Errorf("resolved with an ancestor: %d, want %d (%v)", again, branchA, err)
		}
	})
}

func TestEventCacheBounded(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		f := newFed(t, db, id.RoomV10)
		f.joinNow(bob)
		f.rs.events = newEventCache(20_000)
		for range 60 {
			f.sendNow(bob, "fill the cache")
		}
		s := f.rs.EventCacheStats()
		if s.Bytes > s.MaxBytes || s.Evictions == 0 || s.Entries == 0 {
			t.Errorf("cache not bounded: %+v", s)
		}
		// Everything is still there, from the database.
		if _, err := f.rs.AuthChain(f.ctx, []id.EventID{f.extremities()[0].EventID()}); err != nil {
			t.Error(err)
		}
		misses := f.rs.EventCacheStats().Misses
		f.rs.events = newEventCache(0)
		if _, err := f.rs.StateAfter(f.ctx, f.extremities()[0].EventID()); err != nil {
			t.Fatal(err)
		}
		if s := f.rs.EventCacheStats(); s.Misses == 0 || s.Entries == 0 || misses == 0 {
			t.Errorf("cache not measured: %+v", s)
		}
	})
}
