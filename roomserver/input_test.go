package roomserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func forVersions(t *testing.T, fn func(t *testing.T, f *fed)) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		for _, v := range versions {
			t.Run("v"+string(v), func(t *testing.T) { fn(t, newFed(t, db, v)) })
		}
	})
}

func TestInputRemoteJoinAndMessages(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		since := f.latest()
		join := f.join(bob, f.extremities(), f.state())
		f.input(join)
		if f.latest() <= since {
			t.Error("the join woke no one")
		}
		if got := f.state()[auth.StateKey{Type: "m.room.member", StateKey: string(bob)}]; got == nil || got.EventID() != join.EventID() {
			t.Fatalf("bob's join is not in the current state: %v", got)
		}
		msg := f.message(bob, "hello from afar", []*pdu.Event{join}, f.state())
		f.input(msg)
		if out := f.output(since); !slices.Equal(out, []id.EventID{join.EventID(), msg.EventID()}) {
			t.Errorf("output %v, want the join and the message", out)
		}
		if ext := f.extremityIDs(); !slices.Equal(ext, eventIDs(msg)) {
			t.Errorf("extremities %v, want the message", ext)
		}
		// A local event builds on the remote one.
		reply, err := f.rs.Send(f.ctx, f.roomID, message(alice, "welcome"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(reply.PrevEventIDs(), []id.EventID{msg.EventID()}) {
			t.Errorf("local reply's prev_events %v", reply.PrevEventIDs())
		}
		// Idempotent: taking an event in twice changes nothing.
		pos := f.latest()
		if err := f.rs.InputRemote(f.ctx, msg, nil); err != nil {
			t.Errorf("second input: %v", err)
		}
		if err := f.rs.InputOutlier(f.ctx, join); err != nil {
			t.Errorf("join again as an outlier: %v", err)
		}
		if f.latest() != pos || len(f.output(pos)) != 0 {
			t.Error("a repeated event was output again")
		}
		if h := f.header(join.EventID()); h.Outlier || h.StreamPos == 0 {
			t.Errorf("join after repeats: %+v", h)
		}
		// A restarted roomserver sees the same room.
		again := newRoomserver(t, f.db, federation.GenerateSigningKey(), nil)
		st, err := again.CurrentState(f.ctx, f.roomID)
		if err != nil || st[auth.StateKey{Type: "m.room.member", StateKey: string(bob)}] == nil {
			t.Errorf("state after restart: %v", err)
		}
	})
}

func TestInputRemoteRejected(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		join := f.joinNow(bob)
		before, ext, since := f.state(), f.extremityIDs(), f.latest()
		checkUnchanged := func(ev *pdu.Event) {
			t.Helper()
			if h := f.header(ev.EventID()); h == nil || !h.Rejected || h.Outlier || h.StreamPos != 0 || h.SoftFailed {
				t.Errorf("%s stored as %+v, want rejected", ev.Type(), h)
			}
			if f.latest() != since || len(f.output(since)) != 0 {
				t.Errorf("%s was output", ev.Type())
			}
			if !slices.Equal(f.extremityIDs(), ext) {
				t.Errorf("%s changed the extremities", ev.Type())
			}
			if st := f.state(); len(st) != len(before) || st[auth.StateKey{Type: "m.room.power_levels"}].EventID() != before[auth.StateKey{Type: "m.room.power_levels"}].EventID() {
				t.Errorf("%s changed the state", ev.Type())
			}
		}

		// Check 4: mallory never joined, as her own auth events show.
		intruder := f.message(mallory, "let me in", f.extremities(), f.state())
		err := f.rs.InputRemote(f.ctx, intruder, nil)
		var rej *RejectedError
		var authErr *auth.Error
		if !errors.As(err, &rej) || !errors.Is(err, ErrRejected) || !errors.As(err, &authErr) {
			t.Fatalf("intruder: %v", err)
		}
		checkUnchanged(intruder)
		if got, _ := f.rs.Event(f.ctx, intruder.EventID()); got == nil {
			t.Error("a rejected event is not stored")
		}
		if err := f.rs.InputRemote(f.ctx, intruder, nil); err != nil {
			t.Errorf("a stored rejected event again: %v", err)
		}

		// Check 4: bob may not change the power levels.
		pl := f.build(bob, "m.room.power_levels", ptr(""), plContent(f.version, 50, bob), f.extremities(), f.state())
		if err := f.rs.InputRemote(f.ctx, pl, nil); !errors.Is(err, ErrRejected) {
			t.Fatalf("power levels by bob: %v", err)
		}
		checkUnchanged(pl)
		if st, err := f.rs.StateAfter(f.ctx, pl.EventID()); err != nil || st[auth.StateKey{Type: "m.room.power_levels"}].EventID() == pl.EventID() {
			t.Errorf("state after a rejected event holds it: %v", err)
		}

		// Rule 2.3 (3.3 in v12): an event whose auth events include a rejected one.
		st := f.state()
		st[auth.StateKey{Type: "m.room.power_levels"}] = pl
		msg := f.message(bob, "with rejected auth", f.extremities(), st)
		err = f.rs.InputRemote(f.ctx, msg, nil)
		if !errors.As(err, &authErr) || (authErr.Rule != "2.3" && authErr.Rule != "3.3") {
			t.Fatalf("rejected auth event: %v", err)
		}
		checkUnchanged(msg)

		// Check 5: the auth events say bob is joined, the state before says he is banned.
		ban, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.member", StateKey: ptr(string(bob)), Sender: alice, Content: json.RawMessage(`{"membership":"ban"}`)})
		if err != nil {
			t.Fatal(err)
		}
		before, ext, since = f.state(), f.extremityIDs(), f.latest()
		old := f.state()
		old[auth.StateKey{Type: "m.room.member", StateKey: string(bob)}] = join
		evasion := f.message(bob, "banned but talking", []*pdu.Event{ban}, old)
		if err := f.rs.InputRemote(f.ctx, evasion, nil); !errors.As(err, &authErr) {
			t.Fatalf("message after the ban: %v", err)
		}
		checkUnchanged(evasion)
		if m, _ := f.rs.Members(f.ctx, f.roomID, "ban"); !slices.Equal(m, []id.UserID{bob}) {
			t.Errorf("banned members %v", m)
		}
	})
}

func TestInputRemoteSoftFail(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		f.joinNow(bob)
		talk := f.sendNow(bob, "before the ban")
		stateAtTalk := f.state()
		ban, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.member", StateKey: ptr(string(bob)), Sender: alice, Content: json.RawMessage(`{"membership":"ban"}`)})
		if err != nil {
			t.Fatal(err)
		}
		since, stateBefore := f.latest(), f.state()
		// bob's server builds on the message before the ban, as if it had not seen it.
		evade := f.message(bob, "ban evasion", []*pdu.Event{talk}, stateAtTalk)
		if err := f.rs.InputRemote(f.ctx, evade, nil); err != nil {
			t.Fatalf("soft-failed event: %v", err)
		}
		h := f.header(evade.EventID())
		if h == nil || !h.SoftFailed || h.Rejected || h.Outlier || h.StreamPos != 0 || h.StateBefore == 0 {
			t.Fatalf("stored as %+v, want soft-failed", h)
		}
		if f.latest() != since {
			t.Error("a soft-failed event woke consumers")
		}
		if !slices.Equal(f.extremityIDs(), eventIDs(ban)) {
			t.Errorf("extremities %v, want only the ban", f.extremityIDs())
		}
		if st := f.state(); len(st) != len(stateBefore) || st[auth.StateKey{Type: "m.room.member", StateKey: string(bob)}].EventID() != ban.EventID() {
			t.Error("a soft-failed event changed the current state")
		}
		// It is in the DAG: its state is known, and the next local event does not build on it.
		if st, err := f.rs.StateAfter(f.ctx, evade.EventID()); err != nil || st[auth.StateKey{Type: "m.room.member", StateKey: string(bob)}] == nil {
			t.Errorf("state after the soft-failed event: %v", err)
		}
		next, err := f.rs.Send(f.ctx, f.roomID, message(alice, "after"))
		if err != nil || slices.Contains(next.PrevEventIDs(), evade.EventID()) {
			t.Errorf("local event after a soft-failed one: %v %v", next.PrevEventIDs(), err)
		}
	})
}

// TestInputRemoteFork races two power levels changes on concurrent branches: the one sent later
// (origin_server_ts) wins the resolution whatever order they arrive in, and an event that names
// both merges the branches.
func TestInputRemoteFork(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		for _, lateFirst := range []bool{true, false} {
			if !lateFirst {
				f = newFed(t, f.db, f.version)
			}
			forkRace(t, f, lateFirst)
		}
	})
}

func forkRace(t *testing.T, f *fed, lateFirst bool) {
	joinB, joinC := f.joinNow(bob), f.joinNow(carol)
	base, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.power_levels", StateKey: ptr(""), Sender: alice,
		Content: json.RawMessage(plContent(f.version, 50, bob, carol))})
	if err != nil {
		t.Fatal(err)
	}
	st := f.state()
	early := f.build(bob, "m.room.power_levels", ptr(""), plContent(f.version, 60, bob, carol), []*pdu.Event{base}, st)
	late := f.build(carol, "m.room.power_levels", ptr(""), plContent(f.version, 70, bob, carol), []*pdu.Event{base}, st)
	first, second := early, late
	if lateFirst {
		first, second = late, early
	}
	since := f.latest()
	f.input(first)
	if got := f.state()[auth.StateKey{Type: "m.room.power_levels"}]; got.EventID() != first.EventID() {
		t.Errorf("power levels %s after the first branch, want %s", got.EventID(), first.EventID())
	}
	f.input(second) // on a fork: the extremity is now the first, not base
	if got := f.state()[auth.StateKey{Type: "m.room.power_levels"}]; got.EventID() != late.EventID() {
		t.Errorf("late first %v: resolved power levels %s, want the later one %s", lateFirst, got.EventID(), late.EventID())
	}
	if ext := f.extremityIDs(); !slices.Equal(ext, eventIDs(early, late)) {
		t.Errorf("extremities %v, want both branches", ext)
	}
	if out := f.output(since); !slices.Equal(out, []id.EventID{first.EventID(), second.EventID()}) {
		t.Errorf("output %v", out)
	}
	// The stored current state is the resolved one too.
	fresh := newRoomserver(t, f.db, federation.GenerateSigningKey(), nil)
	if got, err := fresh.StateEvent(f.ctx, f.roomID, "m.room.power_levels", ""); err != nil || got == nil || got.EventID() != late.EventID() {
		t.Errorf("stored current power levels are not the later ones: %v", err)
	}
	// A user never seen before joins on the early branch: the state key is numbered in the
	// event's own transaction, after the resolution that placed it.
	daveJoin := f.join(dave, []*pdu.Event{early}, f.stateAfter(early))
	f.input(daveJoin)
	if got, err := newRoomserver(t, f.db, federation.GenerateSigningKey(), nil).StateEvent(f.ctx, f.roomID, "m.room.member", string(dave)); err != nil || got == nil || got.EventID() != daveJoin.EventID() {
		t.Errorf("stored current state lacks dave's join: %v", err)
	}
	if got := f.state()[auth.StateKey{Type: "m.room.member", StateKey: string(dave)}]; got == nil || got.EventID() != daveJoin.EventID() {
		t.Error("cached current state lacks dave's join")
	}
	early = daveJoin
	// A name change on the early branch survives the resolution: no other branch sets one.
	name := f.build(bob, "m.room.name", ptr(""), `{"name":"forked"}`, []*pdu.Event{early}, f.stateAfter(early))
	f.input(name)
	if got := f.state()[auth.StateKey{Type: "m.room.name"}]; got == nil || got.EventID() != name.EventID() {
		t.Errorf("name on a branch: %v", got)
	}
	// bob merges the branches.
	merge := f.message(bob, "merge", []*pdu.Event{name, late}, f.state())
	f.input(merge)
	if ext := f.extremityIDs(); !slices.Equal(ext, eventIDs(merge)) {
		t.Errorf("extremities after the merge %v", ext)
	}
	before, err := f.rs.StateBefore(f.ctx, merge.EventID())
	if err != nil || before[auth.StateKey{Type: "m.room.power_levels"}].EventID() != late.EventID() ||
		before[auth.StateKey{Type: "m.room.name"}].EventID() != name.EventID() {
		t.Errorf("state before the merge: %v", err)
	}
	for _, j := range []*pdu.Event{joinB, joinC} {
		if before[auth.StateKey{Type: "m.room.member", StateKey: *j.StateKey()}].EventID() != j.EventID() {
			t.Errorf("state before the merge lost %s", *j.StateKey())
		}
	}
	// And a local event builds on the merge alone.
	next, err := f.rs.Send(f.ctx, f.roomID, message(alice, "merged"))
	if err != nil || !slices.Equal(next.PrevEventIDs(), []id.EventID{merge.EventID()}) {
		t.Errorf("after the merge: %v %v", next.PrevEventIDs(), err)
	}
}

func (f *fed) stateAfter(ev *pdu.Event) map[auth.StateKey]*pdu.Event {
	f.t.Helper()
	st, err := f.rs.StateAfter(f.ctx, ev.EventID())
	if err != nil || st == nil {
		f.t.Fatalf("state after %s: %v", ev.EventID(), err)
	}
	return st
}

func TestInputRemoteOutOfOrder(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		join := f.joinNow(bob)
		ext, st := f.extremities(), f.state()
		// The remote side saw dave join and bob talk; this server missed both.
		daveJoin := f.join(dave, ext, st)
		withDave := f.stateAfterEvent(st, daveJoin)
		unseen := f.message(bob, "you missed this", []*pdu.Event{daveJoin}, withDave)
		latest := f.message(bob, "and this arrives", []*pdu.Event{unseen}, withDave)

		err := f.rs.InputRemote(f.ctx, latest, nil)
		var missing *MissingEventsError
		if !errors.As(err, &missing) || missing.Kind != MissingPrevEvents || !slices.Equal(missing.Missing, []id.EventID{unseen.EventID()}) {
			t.Fatalf("missing prev events: %v", err)
		}
		if f.header(latest.EventID()) != nil {
			t.Fatal("an event with missing prev events was stored")
		}
		// Federation fetched the state before it (/state_ids), dave's join among it.
		supplied := make([]*pdu.Event, 0, len(withDave))
		for _, ev := range withDave {
			supplied = append(supplied, ev)
		}
		since := f.latest()
		if err := f.rs.InputRemote(f.ctx, latest, supplied); err != nil {
			t.Fatalf("with the state supplied: %v", err)
		}
		if h := f.header(daveJoin.EventID()); h == nil || !h.Outlier {
			t.Errorf("dave's join stored as %+v, want an outlier", h)
		}
		before, err := f.rs.StateBefore(f.ctx, latest.EventID())
		if err != nil || before[auth.StateKey{Type: "m.room.member", StateKey: string(dave)}] == nil {
			t.Errorf("state before %v", err)
		}
		if got := f.state()[auth.StateKey{Type: "m.room.member", StateKey: string(dave)}]; got == nil || got.EventID() != daveJoin.EventID() {
			t.Errorf("dave is not in the resolved current state: %v", got)
		}
		if !slices.Equal(f.extremityIDs(), eventIDs(join, latest)) {
			t.Errorf("extremities %v, want the old one and the new one", f.extremityIDs())
		}
		if out := f.output(since); !slices.Equal(out, []id.EventID{latest.EventID()}) {
			t.Errorf("output %v", out)
		}
		// The event that came late cannot be placed either now: its prev event is an outlier.
		err = f.rs.InputRemote(f.ctx, unseen, nil)
		if !errors.As(err, &missing) || !slices.Equal(missing.Missing, []id.EventID{daveJoin.EventID()}) {
			t.Errorf("prev event that is an outlier: %v", err)
		}
		// Supplied state must be stored or come with the event; a dropped event is missing.
		bad := f.buildWith(federation.GenerateSigningKey(), carol, "m.room.member", ptr(string(carol)), `{"membership":"join"}`, ext, st)
		orphan := f.message(bob, "orphan", []*pdu.Event{unseen}, withDave)
		err = f.rs.InputRemote(f.ctx, orphan, append(slices.Clone(supplied), bad))
		if !errors.Is(err, pdu.ErrSignature) {
			t.Errorf("supplied state with a badly signed event: %v", err)
		}
	})
}

// stateAfterEvent returns st with ev applied.
func (f *fed) stateAfterEvent(st map[auth.StateKey]*pdu.Event, ev *pdu.Event) map[auth.StateKey]*pdu.Event {
	out := map[auth.StateKey]*pdu.Event{}
	for k, v := range st {
		out[k] = v
	}
	out[auth.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = ev
	return out
}

func TestInputOutliers(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		ext, st := f.extremities(), f.state()
		carolJoin := f.join(carol, ext, st)
		carolMsg := f.message(carol, "hi", []*pdu.Event{carolJoin}, f.stateAfterEvent(st, carolJoin))
		err := f.rs.InputOutlier(f.ctx, carolMsg)
		var missing *MissingEventsError
		if !errors.As(err, &missing) || missing.Kind != MissingAuthEvents || !slices.Equal(missing.Missing, []id.EventID{carolJoin.EventID()}) {
			t.Fatalf("outlier with a missing auth event: %v", err)
		}
		since := f.latest()
		if err := f.rs.InputOutlier(f.ctx, carolJoin); err != nil {
			t.Fatal(err)
		}
		h := f.header(carolJoin.EventID())
		if h == nil || !h.Outlier || h.StreamPos != 0 || h.StateBefore != 0 || h.Rejected {
			t.Fatalf("outlier stored as %+v", h)
		}
		if f.latest() != since || len(f.output(since)) != 0 {
			t.Error("an outlier was output")
		}
		if st, err := f.rs.StateBefore(f.ctx, carolJoin.EventID()); st != nil || err != nil {
			t.Errorf("state of an outlier: %v %v", st, err)
		}
		if f.state()[auth.StateKey{Type: "m.room.member", StateKey: string(carol)}] != nil {
			t.Error("an outlier changed the current state")
		}
		// The outlier joins the timeline.
		if err := f.rs.InputRemote(f.ctx, carolJoin, nil); err != nil {
			t.Fatalf("promote: %v", err)
		}
		if h := f.header(carolJoin.EventID()); h.Outlier || h.StreamPos == 0 {
			t.Errorf("promoted outlier stored as %+v", h)
		}
		if f.state()[auth.StateKey{Type: "m.room.member", StateKey: string(carol)}] == nil {
			t.Error("the promoted join is not in the current state")
		}
		f.input(carolMsg)

		// A batch in any order: auth events go first; a rejected one does not stop the rest.
		st = f.state()
		daveJoin := f.join(dave, f.extremities(), st)
		withDave := f.stateAfterEvent(st, daveJoin)
		daveName := f.build(dave, "m.room.name", ptr(""), `{"name":"not allowed"}`, []*pdu.Event{daveJoin}, withDave)
		daveMsg := f.message(dave, "hi", []*pdu.Event{daveJoin}, withDave)
		if err := f.rs.InputOutliers(f.ctx, []*pdu.Event{daveMsg, daveName, daveJoin}); err != nil {
			t.Fatalf("batch: %v", err)
		}
		for _, ev := range []*pdu.Event{daveJoin, daveName, daveMsg} {
			if h := f.header(ev.EventID()); h == nil || !h.Outlier || h.Rejected != (ev == daveName) {
				t.Errorf("%s stored as %+v", ev.Type(), h)
			}
		}
		// An outlier of a room the server does not know names what to fetch.
		other := *f
		other.roomID, other.version = "!elsewhere:remote.test", id.RoomV10
		if f.version.RoomIDIsCreateEventID() {
			other.roomID, other.version = "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", id.RoomV12
		}
		stray := other.message(carol, "elsewhere", nil, nil)
		err = f.rs.InputOutlier(f.ctx, stray)
		if f.version.RoomIDIsCreateEventID() {
			// The room ID names the create event to fetch.
			if !errors.As(err, &missing) || !slices.Equal(missing.Missing, []id.EventID{createEventID(other.roomID)}) {
				t.Errorf("outlier of an unknown room: %v", err)
			}
		} else if !errors.Is(err, ErrRoomNotFound) {
			t.Errorf("outlier of an unknown room without auth events: %v", err)
		}
	})
}

func TestInputSignaturesAndHashes(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		f.joinNow(bob)
		// Signed with a key that is not bob's server's, under its key ID: dropped.
		forged := federation.GenerateSigningKey()
		forged.ID = f.remote.ID
		bad := f.buildWith(forged, bob, "m.room.message", nil, `{"body":"forged"}`, f.extremities(), f.state())
		since := f.latest()
		for name, input := range map[string]func() error{
			"remote":  func() error { return f.rs.InputRemote(f.ctx, bad, nil) },
			"outlier": func() error { return f.rs.InputOutlier(f.ctx, bad) },
		} {
			if err := input(); !errors.Is(err, pdu.ErrSignature) {
				t.Errorf("%s: forged signature: %v", name, err)
			}
		}
		if got, _ := f.rs.Event(f.ctx, bad.EventID()); got != nil || f.latest() != since {
			t.Error("an event with a bad signature was stored")
		}

		// The content was changed on the way: the hash fails, the signature (over the redacted
		// form) holds, and the event is taken in redacted.
		msg := f.message(bob, "the original", f.extremities(), f.state())
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(msg.JSON()))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		m["content"] = map[string]any{"msgtype": "m.text", "body": "tampered"}
		raw, _ := json.Marshal(m)
		tampered, err := pdu.Parse(f.version, raw)
		if err != nil || tampered.EventID() != msg.EventID() || tampered.CheckContentHash() {
			t.Fatalf("tampered event: %v", err)
		}
		f.input(tampered)
		got, err := f.rs.Event(f.ctx, msg.EventID())
		if err != nil || got == nil || string(got.Content()) != "{}" {
			t.Errorf("stored content %s, want it redacted: %v", got.Content(), err)
		}
		if out := f.output(since); !slices.Equal(out, []id.EventID{msg.EventID()}) {
			t.Errorf("output %v", out)
		}
	})
}

func TestInputRemoteNewRoom(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		for _, v := range []id.RoomVersion{id.RoomV1, id.RoomV10, id.RoomV12} {
			t.Run("v"+string(v), func(t *testing.T) {
				f := newFed(t, db, "")
				f.version = v
				if !v.RoomIDIsCreateEventID() {
					f.roomID = id.RoomID("!remote" + string(v) + ":remote.test")
				}
				content := `{"room_version":"` + string(v) + `"`
				if v.CreatorInContent() {
					content += `,"creator":"` + string(carol) + `"`
				}
				create := f.build(carol, "m.room.create", ptr(""), content+"}", nil, nil)
				f.roomID = create.RoomID()
				join := f.join(carol, []*pdu.Event{create}, map[auth.StateKey]*pdu.Event{{Type: "m.room.create"}: create})
				if err := f.rs.InputRemote(f.ctx, join, nil); !errors.Is(err, ErrRoomNotFound) {
					t.Errorf("event of an unknown room: %v", err)
				}
				f.input(create)
				if got, err := f.rs.RoomVersion(f.ctx, f.roomID); err != nil || got != v {
					t.Fatalf("room version %s, %v", got, err)
				}
				f.input(join)
				f.input(f.build(carol, "m.room.join_rules", ptr(""), `{"join_rule":"public"}`, f.extremities(), f.state()))
				f.joinNow(bob)
				if m, _ := f.rs.Members(f.ctx, f.roomID, "join"); !slices.Equal(m, []id.UserID{bob, carol}) {
					t.Errorf("members %v", m)
				}
				// Another create event for the same room is refused.
				if !v.RoomIDIsCreateEventID() {
					second := f.build(carol, "m.room.create", ptr(""), content+`,"x":1}`, nil, nil)
					if err := f.rs.InputRemote(f.ctx, second, nil); err == nil || f.header(second.EventID()) != nil {
						t.Errorf("second create event: %v", err)
					}
				}
			})
		}
	})
}
