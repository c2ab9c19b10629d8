package roomserver

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// forkedRoom is a public room on SQLite with 10 000 joined local members and two branches of
// remote events that differ by 100 state events: on each, remote users join, bob or carol
// kicks a member and sets the topic; on B carol also changes the power levels.
type forkedRoom struct {
	f          *fed
	a, b       int64      // snapshots of the states after the tips of the branches
	old        *pdu.Event // the join of the 5 000th member
	lateB      *pdu.Event // B's power levels, which win
	setup      time.Duration
	setupInput time.Duration // of which the branches' remote events
	err        error
}

var (
	forkedMu    sync.Mutex
	forkedRooms = map[id.RoomVersion]*forkedRoom{} // built once per process
	benchDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchTB lets the fixture be built outside any one benchmark's lifetime.
type benchTB struct {
	testing.TB
	err error
}

func (b *benchTB) Helper() {}
func (b *benchTB) Fatal(args ...any) {
	b.err = fmt.Errorf("%s", fmt.Sprint(args...))
	panic(b)
}
func (b *benchTB) Fatalf(format string, args ...any) {
	b.err = fmt.Errorf(format, args...)
	panic(b)
}

func forked(b *testing.B, v id.RoomVersion) *forkedRoom {
	b.Helper()
	forkedMu.Lock()
	room := forkedRooms[v]
	if room == nil {
		room = buildForkedRoom(b, v)
		forkedRooms[v] = room
	}
	forkedMu.Unlock()
	if room.err != nil {
		b.Fatal(room.err)
	}
	b.Logf("room v%s: setup %v, of which %v for the 200 remote events on the branches", v, room.setup.Round(time.Millisecond), room.setupInput.Round(time.Millisecond))
	return room
}

func buildForkedRoom(b *testing.B, v id.RoomVersion) (room *forkedRoom) {
	room = &forkedRoom{}
	tb := &benchTB{TB: b}
	defer func() {
		if p := recover(); p != nil {
			if p != any(tb) {
				panic(p)
			}
			room.err = tb.err
		}
	}()
	start := time.Now()
	ctx := context.Background()
	if benchDir == "" {
		var err error
		if benchDir, err = os.MkdirTemp("", "lattice-bench-"); err != nil {
			tb.Fatal(err)
		}
	}
	db, err := storage.Open(ctx, "sqlite://"+filepath.Join(benchDir, string(v)+".db"), storage.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	f := newFed(tb, db, v)
	room.f = f
	for i := range 10_000 {
		u := id.UserID(fmt.Sprintf("@u%05d:example.test", i))
		ev, err := f.rs.Send(ctx, f.roomID, Template{Type: "m.room.member", StateKey: ptr(string(u)), Sender: u, Content: json.RawMessage(`{"membership":"join"}`)})
		if err != nil {
			tb.Fatal(err)
		}
		if i == 5_000 {
			room.old = ev
		}
	}
	f.joinNow(bob)
	f.joinNow(carol)
	base, err := f.rs.Send(ctx, f.roomID, Template{Type: "m.room.power_levels", StateKey: ptr(""), Sender: alice, Content: json.RawMessage(plContent(v, 50, bob, carol))})
	if err != nil {
		tb.Fatal(err)
	}
	inputStart := time.Now()
	stA, stB := f.state(), maps.Clone(f.state())
	tipA, tipB := base, base
	send := func(st map[auth.StateKey]*pdu.Event, tip **pdu.Event, sender id.UserID, typ, stateKey, content string) *pdu.Event {
		ev := f.build(sender, typ, ptr(stateKey), content, []*pdu.Event{*tip}, st)
		f.input(ev)
		st[auth.StateKey{Type: typ, StateKey: stateKey}] = ev
		*tip = ev
		return ev
	}
	for i := range 48 {
		u := fmt.Sprintf("@a%02d:remote.test", i)
		send(stA, &tipA, id.UserID(u), "m.room.member", u, `{"membership":"join"}`)
	}
	send(stA, &tipA, bob, "m.room.member", "@u00001:example.test", `{"membership":"leave"}`)
	send(stA, &tipA, bob, "m.room.topic", "", `{"topic":"a"}`)
	afterA, err := f.rs.store.Room(ctx, db, string(f.roomID))
	if err != nil {
		tb.Fatal(err)
	}
	room.a = afterA.Snapshot
	for i := range 47 {
		u := fmt.Sprintf("@b%02d:remote.test", i)
		send(stB, &tipB, id.UserID(u), "m.room.member", u, `{"membership":"join"}`)
	}
	room.lateB = send(stB, &tipB, carol, "m.room.power_levels", "", plContent(v, 60, bob, carol, "@u00002:example.test"))
	send(stB, &tipB, carol, "m.room.member", "@u00003:example.test", `{"membership":"leave"}`)
	send(stB, &tipB, carol, "m.room.topic", "", `{"topic":"b"}`)
	// The state after B's tip is the state before an event on it.
	msg := f.message(carol, "on B", []*pdu.Event{tipB}, stB)
	f.input(msg)
	room.b = f.header(msg.EventID()).StateBefore
	room.setupInput = time.Since(inputStart)
	room.setup = time.Since(start)
	return room
}

// BenchmarkResolveForksStored resolves the two branches of a 10 000-member room that differ by
// 100 state events through the storage adapter on SQLite and stores the result as a snapshot;
// the target is 50 ms. "resolve" leaves out the storing; "cold" starts each run with
// empty caches.
func BenchmarkResolveForksStored(b *testing.B) {
	ctx := context.Background()
	for _, v := range []id.RoomVersion{id.RoomV10, id.RoomV12} {
		b.Run("v"+string(v), func(b *testing.B) {
			room := forked(b, v)
			rs := room.f.rs
			snap, err := rs.resolveSnapshots(ctx, room.f.roomID, []int64{room.a, room.b})
			if err != nil {
				b.Fatal(err)
			}
			st, err := rs.loadState(ctx, v, snap)
			if err != nil {
				b.Fatal(err)
			}
			if len(st) < 10_000 || st[auth.StateKey{Type: "m.room.power_levels"}].EventID() != room.lateB.EventID() {
				b.Fatalf("resolved state: %d entries, power levels %s", len(st), st[auth.StateKey{Type: "m.room.power_levels"}].EventID())
			}
			for b.Loop() {
				if _, err := rs.resolveSnapshots(ctx, room.f.roomID, []int64{room.a, room.b}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(room.setup.Seconds(), "setup-s")
		})
		b.Run("v"+string(v)+"/cold", func(b *testing.B) {
			// A roomserver just started: no event, state key or auth chain is cached.
			room := forked(b, v)
			for b.Loop() {
				b.StopTimer()
				rs, err := New(ctx, room.f.db, Options{ServerName: localServer})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := rs.resolveSnapshots(ctx, room.f.roomID, []int64{room.a, room.b}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("v"+string(v)+"/resolve", func(b *testing.B) {
			room := forked(b, v)
			rs := room.f.rs
			for b.Loop() {
				a, err := rs.loadNumState(ctx, room.a)
				if err != nil {
					b.Fatal(err)
				}
				c, err := rs.loadNumState(ctx, room.b)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rs.resolveStates(ctx, v, []*numState{a, c}, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStateAtOldEvent loads the state after the join of the 5 000th member of the room,
// long buried under later events; the target is 10 ms. "cold" empties the event cache
// before each load, so that every event is read from SQLite.
func BenchmarkStateAtOldEvent(b *testing.B) {
	ctx := context.Background()
	room := forked(b, id.RoomV12)
	rs := room.f.rs
	load := func(b *testing.B) {
		st, err := rs.StateAfter(ctx, room.old.EventID())
		if err != nil || len(st) < 5_000 || st[auth.StateKey{Type: "m.room.member", StateKey: *room.old.StateKey()}] == nil {
			b.Fatalf("state after an old event: %d entries, %v", len(st), err)
		}
	}
	b.Run("warm", func(b *testing.B) {
		load(b)
		for b.Loop() {
			load(b)
		}
	})
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			rs.events = newEventCache(0)
			b.StartTimer()
			load(b)
		}
		rs.events = newEventCache(0)
	})
	// State as event IDs parses nothing: the form federation's /state_ids needs. "ids" runs as in
	// a running server, with the store's caches of state keys and event IDs warm; "ids-cold"
	// starts each load from an empty store, as after a restart.
	b.Run("ids", func(b *testing.B) {
		for b.Loop() {
			ids, err := rs.StateIDsAfter(ctx, room.old.EventID())
			if err != nil || len(ids) < 5_000 {
				b.Fatalf("state IDs after an old event: %d entries, %v", len(ids), err)
			}
		}
	})
	b.Run("ids-cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			rs.store = freshStore(b, rs)
			b.StartTimer()
			ids, err := rs.StateIDsAfter(ctx, room.old.EventID())
			if err != nil || len(ids) < 5_000 {
				b.Fatalf("state IDs after an old event: %d entries, %v", len(ids), err)
			}
		}
	})
}

// BenchmarkInputRemoteMessage takes in messages from a remote server, each on the forward
// extremities, in the 10 000-member room: the federation side of sending a message. Building
// and signing the event on the remote side is not counted.
func BenchmarkInputRemoteMessage(b *testing.B) {
	ctx := context.Background()
	room := forked(b, id.RoomV12)
	f := room.f
	f.t = b
	st, err := f.rs.CurrentState(ctx, f.roomID)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		ev := f.message(bob, fmt.Sprint("message ", i), f.extremities(), st)
		b.StartTimer()
		if err := f.rs.InputRemote(ctx, ev, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// freshStore opens the room store again, with empty caches, as after a restart.
func freshStore(b *testing.B, rs *Roomserver) *roomstore.Store {
	s, err := roomstore.Open(context.Background(), rs.db)
	if err != nil {
		b.Fatal(err)
	}
	return s
}
