package presence

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/presencestore"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const server = "example.test"

var (
	alice = id.UserID("@alice:" + server)
	bob   = id.UserID("@bob:" + server)
	carol = id.UserID("@carol:" + server)
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is a roomserver, a user component and a notifier on one database.
type env struct {
	t     testing.TB
	db    *storage.DB
	nf    *notifier.Notifier
	rooms *roomserver.Roomserver
	users *userapi.Users
	clock *clock
}

func newEnv(t testing.TB, db *storage.DB) *env {
	ctx := context.Background()
	nf := notifier.New()
	t.Cleanup(nf.Close)
	rs, err := roomserver.New(ctx, db, roomserver.Options{ServerName: server, SigningKey: federation.GenerateSigningKey(), Notifier: nf})
	if err != nil {
		t.Fatal(err)
	}
	us, err := userapi.New(ctx, db, userapi.Options{ServerName: server, BcryptCost: 4, Notifier: nf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { us.Close() })
	return &env{t: t, db: db, nf: nf, rooms: rs, users: us, clock: &clock{now: time.UnixMilli(1_700_000_000_000)}}
}

func (e *env) tracker(enabled bool) *Tracker {
	e.t.Helper()
	tr, err := New(context.Background(), Options{DB: e.db, Rooms: e.rooms, Users: e.users, Notifier: e.nf, ServerName: server,
		Enabled: enabled, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(tr.Close)
	return tr
}

// room creates a public room of alice that the others join.
func (e *env) room(others ...id.UserID) id.RoomID {
	e.t.Helper()
	ctx := context.Background()
	roomID, err := e.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Preset: roomserver.PresetPublicChat})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, u := range others {
		e.member(roomID, u, "join")
	}
	return roomID
}

func (e *env) member(roomID id.RoomID, u id.UserID, membership string) {
	e.t.Helper()
	sk := string(u)
	content, _ := json.Marshal(map[string]string{"membership": membership})
	if _, err := e.rooms.Send(context.Background(), roomID, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: u, Content: content}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) joined(u id.UserID) []id.RoomID {
	e.t.Helper()
	rooms, err := e.rooms.RoomsOf(context.Background(), u, "join")
	if err != nil {
		e.t.Fatal(err)
	}
	return rooms
}

// collect runs the source for u over (from, to] and returns the events by sender.
func (e *env) collect(tr *Tracker, u id.UserID, from, to int64, initial bool, f *synctypes.EventFilter) map[id.UserID]content {
	e.t.Helper()
	resp := synctypes.NewResponse()
	req := &synctypes.Request{User: u, Joined: e.joined(u), Initial: initial, Filter: &synctypes.Filter{Presence: f}}
	if err := tr.Collect(context.Background(), req, from, to, resp); err != nil {
		e.t.Fatal(err)
	}
	out := map[id.UserID]content{}
	for _, raw := range resp.Presence.Events {
		var ev struct {
			Type    string    `json:"type"`
			Sender  id.UserID `json:"sender"`
			Content content   `json:"content"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != "m.presence" {
			e.t.Fatalf("event %s: %v", raw, err)
		}
		if _, dup := out[ev.Sender]; dup {
			e.t.Fatalf("two events of %s", ev.Sender)
		}
		out[ev.Sender] = ev.Content
	}
	return out
}

func senders(m map[id.UserID]content) []id.UserID {
	var out []id.UserID
	for u := range m {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (e *env) stored(u id.UserID) *presencestore.Presence {
	e.t.Helper()
	s, err := presencestore.Open(context.Background(), e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := s.Get(context.Background(), string(u))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func pos(t testing.TB, tr *Tracker) int64 {
	t.Helper()
	p, err := tr.Position(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func state(t *testing.T, tr *Tracker, u id.UserID) record {
	t.Helper()
	r, err := tr.peek(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStreamName(t *testing.T) {
	if presencestore.Stream != synctypes.StreamPresence {
		t.Fatalf("store stream %q, sync stream %q", presencestore.Stream, synctypes.StreamPresence)
	}
}

// TestTransitions walks the state machine of the package comment and checks that only changes
// take positions.
func TestTransitions(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		tr := e.tracker(true)

		// set_presence offline changes nothing, not even creates a row.
		if err := tr.SetFromSync(ctx, bob, Offline); err != nil || pos(t, tr) != 0 || e.stored(bob) != nil {
			t.Fatalf("offline sync: %v, pos %d", err, pos(t, tr))
		}
		if err := tr.SetFromSync(ctx, bob, "away"); err == nil {
			t.Fatal("unknown set_presence accepted")
		}
		// Connecting brings bob online; syncing on stays at the same position.
		if err := tr.SetFromSync(ctx, bob, Online); err != nil {
			t.Fatal(err)
		}
		if p := e.stored(bob); p == nil || p.State != Online || p.Pos != 1 || p.LastActiveTS != e.clock.Now().UnixMilli() {
			t.Fatalf("after online sync: %+v", p)
		}
		for range 3 {
			e.clock.advance(time.Second)
			if err := tr.SetFromSync(ctx, bob, Online); err != nil {
				t.Fatal(err)
			}
			if err := tr.Touch(ctx, bob); err != nil {
				t.Fatal(err)
			}
		}
		if pos(t, tr) != 1 {
			t.Fatalf("syncs and activity of an online user took positions: %d", pos(t, tr))
		}
		// A client syncing as idle makes bob unavailable; syncing online again brings him back.
		if err := tr.SetFromSync(ctx, bob, Unavailable); err != nil || state(t, tr, bob).state != Unavailable || pos(t, tr) != 2 {
			t.Fatalf("unavailable sync: %v %+v", err, state(t, tr, bob))
		}
		if err := tr.SetFromSync(ctx, bob, Online); err != nil || state(t, tr, bob).state != Online || pos(t, tr) != 3 {
			t.Fatalf("online sync after unavailable sync: %v %+v", err, state(t, tr, bob))
		}
		// Chosen with PUT, unavailable survives online syncs and ends with activity.
		msg := "in a meeting"
		if err := tr.set(ctx, bob, Unavailable, &msg); err != nil {
			t.Fatal(err)
		}
		if err := tr.SetFromSync(ctx, bob, Online); err != nil || state(t, tr, bob).state != Unavailable || pos(t, tr) != 4 {
			t.Fatalf("online sync after PUT unavailable: %v %+v pos %d", err, state(t, tr, bob), pos(t, tr))
		}
		// Activity from before the PUT, as the consumer may read it late, changes nothing.
		if err := tr.touch(ctx, map[id.UserID]int64{bob: e.clock.Now().UnixMilli() - 1}, nil); err != nil || state(t, tr, bob).state != Unavailable {
			t.Fatalf("older activity after PUT unavailable: %v %+v", err, state(t, tr, bob))
		}
		e.clock.advance(time.Minute)
		if err := tr.Touch(ctx, bob); err != nil {
			t.Fatal(err)
		}
		r := state(t, tr, bob)
		if r.state != Online || *r.status != msg || pos(t, tr) != 5 || r.active != e.clock.Now().UnixMilli() {
			t.Fatalf("activity after PUT unavailable: %+v pos %d", r, pos(t, tr))
		}
		// Offline is kept through activity, but a sync that marks the client online ends it.
		if err := tr.set(ctx, bob, Offline, nil); err != nil {
			t.Fatal(err)
		}
		if err := tr.Touch(ctx, bob); err != nil || state(t, tr, bob).state != Offline || pos(t, tr) != 6 {
			t.Fatalf("activity while offline: %v %+v", err, state(t, tr, bob))
		}
		if p := e.stored(bob); p.State != Offline || p.StatusMsg != nil {
			t.Fatalf("PUT offline without a message: %+v", p)
		}
		if err := tr.SetFromSync(ctx, bob, Online); err != nil || state(t, tr, bob).state != Online || pos(t, tr) != 7 {
			t.Fatalf("online sync while offline: %v %+v", err, state(t, tr, bob))
		}
		// The same PUT twice takes one position.
		for range 2 {
			if err := tr.set(ctx, bob, Online, &msg); err != nil {
				t.Fatal(err)
			}
		}
		if pos(t, tr) != 8 {
			t.Fatalf("repeated PUT: position %d, want 8", pos(t, tr))
		}
	})
}

// TestSweep: idle users become unavailable, disconnected ones offline, each once, with a
// wake-up of the rooms they are in; last activity is stored without positions.
func TestSweep(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		roomID := e.room(bob)
		tr := e.tracker(true)
		for _, u := range []id.UserID{alice, bob} {
			if err := tr.SetFromSync(ctx, u, Online); err != nil {
				t.Fatal(err)
			}
		}
		start := pos(t, tr)

		// Alice keeps syncing and is active; bob keeps syncing but is idle.
		for range 6 {
			e.clock.advance(time.Minute)
			for _, u := range []id.UserID{alice, bob} {
				if err := tr.SetFromSync(ctx, u, Online); err != nil {
					t.Fatal(err)
				}
			}
			if err := tr.Touch(ctx, alice); err != nil {
				t.Fatal(err)
			}
			if err := tr.sweep(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if state(t, tr, alice).state != Online || state(t, tr, bob).state != Unavailable || pos(t, tr) != start+1 {
			t.Fatalf("after idling: alice %+v bob %+v pos %d", state(t, tr, alice), state(t, tr, bob), pos(t, tr))
		}
		if p := e.stored(bob); p.SetBy != byServer {
			t.Fatalf("idle bob: %+v", p)
		}
		// Alice's activity reached the database without a position.
		if p := e.stored(alice); e.clock.Now().UnixMilli()-p.LastActiveTS > DefaultFlushAfter.Milliseconds() || p.Pos > start {
			t.Fatalf("alice's stored activity: %+v, now %d", p, e.clock.Now().UnixMilli())
		}

		// Bob's client stops syncing: offline after OfflineAfter, and alice's long-poll on the
		// room wakes for it.
		woke := make(chan error, 1)
		since := pos(t, tr)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			woke <- e.nf.Wait(wctx, map[string]int64{synctypes.StreamPresence: since}, roomserver.RoomKey(roomID))
		}()
		for range 4 {
			e.clock.advance(time.Minute)
			if err := tr.SetFromSync(ctx, alice, Online); err != nil {
				t.Fatal(err)
			}
			if err := tr.Touch(ctx, alice); err != nil {
				t.Fatal(err)
			}
			if err := tr.sweep(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-woke; err != nil {
			t.Fatalf("wait on the room: %v", err)
		}
		if state(t, tr, bob).state != Offline || state(t, tr, alice).state != Online || pos(t, tr) != start+2 {
			t.Fatalf("after disconnecting: alice %+v bob %+v pos %d", state(t, tr, alice), state(t, tr, bob), pos(t, tr))
		}
		tr.mu.Lock()
		_, kept := tr.records[bob]
		tr.mu.Unlock()
		if kept {
			t.Fatal("offline bob still in memory")
		}
		// Activity of offline bob, seconds old, is stored when his record leaves memory.
		e.clock.advance(time.Second)
		if err := tr.Touch(ctx, bob); err != nil || state(t, tr, bob).state != Offline {
			t.Fatalf("activity of offline bob: %v", err)
		}
		if err := tr.sweep(ctx); err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		_, kept = tr.records[bob]
		tr.mu.Unlock()
		if p := e.stored(bob); kept || p.LastActiveTS != e.clock.Now().UnixMilli() || p.Pos != start+2 {
			t.Fatalf("bob's activity while offline: kept %v, %+v", kept, p)
		}
		got := e.collect(tr, alice, start+1, pos(t, tr), false, nil)
		if c, ok := got[bob]; !ok || c.Presence != Offline || c.CurrentlyActive {
			t.Fatalf("alice's view of bob: %+v", got)
		}
	})
}

// TestRestart: a new tracker on the same database goes on from the stored state and position,
// and gives clients OfflineAfter to come back before it marks anyone offline.
func TestRestart(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		tr, err := New(ctx, Options{DB: db, Rooms: e.rooms, Users: e.users, Notifier: e.nf, ServerName: server, Enabled: true, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		msg := "back soon"
		if err := tr.set(ctx, bob, Unavailable, &msg); err != nil {
			t.Fatal(err)
		}
		if err := tr.SetFromSync(ctx, alice, Online); err != nil {
			t.Fatal(err)
		}
		e.clock.advance(30 * time.Second)
		if err := tr.Touch(ctx, alice); err != nil {
			t.Fatal(err)
		}
		tr.Start()
		tr.Close() // stores alice's last activity
		e.clock.advance(time.Minute)

		tr2 := e.tracker(true)
		if pos(t, tr2) != 2 {
			t.Fatalf("position after restart %d", pos(t, tr2))
		}
		r := state(t, tr2, bob)
		if r.state != Unavailable || *r.status != msg || r.setBy != byUser {
			t.Fatalf("bob after restart: %+v", r)
		}
		if a := state(t, tr2, alice); a.active != e.clock.Now().Add(-time.Minute).UnixMilli() {
			t.Fatalf("alice's activity after restart: %d", a.active)
		}
		if err := tr2.sweep(ctx); err != nil || state(t, tr2, alice).state != Online {
			t.Fatalf("sweep right after restart: %v %+v", err, state(t, tr2, alice))
		}
		e.clock.advance(DefaultOfflineAfter + time.Second)
		if err := tr2.sweep(ctx); err != nil || state(t, tr2, alice).state != Offline || state(t, tr2, bob).state != Offline {
			t.Fatalf("sweep after restart and OfflineAfter: %v alice %+v bob %+v", err, state(t, tr2, alice), state(t, tr2, bob))
		}
	})
}

// TestDisabled: nothing is stored or delivered, and the calls still succeed.
func TestDisabled(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.room(bob)
		tr := e.tracker(false)
		tr.Start()
		if err := tr.SetFromSync(ctx, bob, Online); err != nil {
			t.Fatal(err)
		}
		if err := tr.Touch(ctx, bob); err != nil {
			t.Fatal(err)
		}
		if err := tr.SetFromSync(ctx, bob, "away"); err == nil {
			t.Fatal("unknown set_presence accepted")
		}
		if pos(t, tr) != 0 || e.stored(bob) != nil {
			t.Fatalf("disabled presence stored something: pos %d", pos(t, tr))
		}
		if got := e.collect(tr, alice, 0, 0, true, nil); len(got) != 0 {
			t.Fatalf("disabled presence delivered %v", got)
		}
	})
}
