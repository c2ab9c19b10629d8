package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/presencestore"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ids(us ...id.UserID) []id.UserID { return us }

// TestCollect: a user sees the presence of who shares a room with them and their own, changes
// in the range or everyone not offline on an initial sync, through the presence filter.
func TestCollect(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.room(bob)
		if _, err := e.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: carol}); err != nil {
			t.Fatal(err)
		}
		tr := e.tracker(true)
		if err := tr.SetFromSync(ctx, alice, Online); err != nil {
			t.Fatal(err)
		}
		start := pos(t, tr)
		e.clock.advance(time.Minute)
		msg := "lunch"
		if err := tr.set(ctx, bob, Unavailable, &msg); err != nil {
			t.Fatal(err)
		}
		if err := tr.set(ctx, carol, Online, nil); err != nil {
			t.Fatal(err)
		}
		e.clock.advance(2 * time.Second)
		now := pos(t, tr)

		got := e.collect(tr, alice, start, now, false, nil)
		if !slices.Equal(senders(got), ids(bob)) {
			t.Fatalf("alice's changes: %v", senders(got))
		}
		b := got[bob]
		if b.Presence != Unavailable || b.StatusMsg == nil || *b.StatusMsg != msg || b.CurrentlyActive || b.LastActiveAgo == nil || *b.LastActiveAgo != 2000 {
			t.Fatalf("bob's presence: %+v", b)
		}
		if got := e.collect(tr, carol, start, now, false, nil); !slices.Equal(senders(got), ids(carol)) {
			t.Fatalf("carol's changes: %v", senders(got))
		}
		if got := e.collect(tr, alice, now, now, false, nil); len(got) != 0 {
			t.Fatalf("empty range: %v", senders(got))
		}
		// Initial sync, and a token from before presence (position 0): everyone not offline.
		for _, initial := range []bool{true, false} {
			got := e.collect(tr, alice, 0, now, initial, nil)
			if !slices.Equal(senders(got), ids(alice, bob)) || !got[alice].CurrentlyActive || got[alice].Presence != Online {
				t.Fatalf("alice's initial sync (%v): %+v", initial, got)
			}
		}

		// The presence filter.
		limit := 1
		for _, c := range []struct {
			f    synctypes.EventFilter
			want []id.UserID
		}{
			{synctypes.EventFilter{NotSenders: []string{string(bob)}}, ids(alice)},
			{synctypes.EventFilter{Senders: []string{string(bob)}}, ids(bob)},
			{synctypes.EventFilter{Types: []string{"m.typing"}}, nil},
			{synctypes.EventFilter{Types: []string{}}, nil},
			{synctypes.EventFilter{Types: []string{"m.*"}}, ids(alice, bob)},
			{synctypes.EventFilter{NotTypes: []string{"m.presence"}}, nil},
			{synctypes.EventFilter{Limit: &limit}, ids(bob)}, // the newest change
		} {
			if got := e.collect(tr, alice, 0, now, true, &c.f); !slices.Equal(senders(got), c.want) {
				t.Errorf("filter %+v: %v, want %v", c.f, senders(got), c.want)
			}
		}
	})
}

// TestConsumer: a local user joining a room re-announces their presence to its members, and a
// message brings its unavailable sender online.
func TestConsumer(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		roomID := e.room(bob)
		tr := e.tracker(true)
		tr.Start()
		for _, u := range []id.UserID{alice, bob, carol} {
			if err := tr.SetFromSync(ctx, u, Online); err != nil {
				t.Fatal(err)
			}
		}
		msg := "away"
		if err := tr.set(ctx, bob, Unavailable, &msg); err != nil {
			t.Fatal(err)
		}
		before := pos(t, tr)
		// alice's rooms are cached now, without carol.
		if got := e.collect(tr, alice, 0, before, false, nil); slices.Contains(senders(got), carol) {
			t.Fatalf("carol seen before joining: %v", senders(got))
		}

		e.member(roomID, carol, "join")
		waitFor(t, "carol's re-announcement", func() bool { return pos(t, tr) > before })
		if got := e.collect(tr, alice, before, pos(t, tr), false, nil); !slices.Equal(senders(got), ids(carol)) {
			t.Fatalf("after carol joined: %v", senders(got))
		}

		content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": "hi"})
		if _, err := e.rooms.Send(ctx, roomID, roomserver.Template{Type: "m.room.message", Sender: bob, Content: content}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob's message to bring him online", func() bool { return state(t, tr, bob).state == Online })
		if r := state(t, tr, bob); *r.status != msg {
			t.Fatalf("bob after his message: %+v", r)
		}

		// carol leaves: alice stops seeing her changes.
		e.member(roomID, carol, "leave")
		out, _ := e.rooms.OutputPosition(ctx)
		waitFor(t, "the consumer to pass carol's leave", func() bool { return tr.cursor.Load() >= out })
		mark := pos(t, tr)
		if err := tr.set(ctx, carol, Unavailable, nil); err != nil {
			t.Fatal(err)
		}
		if got := e.collect(tr, alice, mark, pos(t, tr), false, nil); len(got) != 0 {
			t.Fatalf("carol seen after leaving: %v", senders(got))
		}
	})
}

// TestLongGap: past maxScan changes, an incremental sync reads only its co-members' rows.
func TestLongGap(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.room(bob)
		tr := e.tracker(true)
		if err := tr.SetFromSync(ctx, alice, Online); err != nil {
			t.Fatal(err)
		}
		start := pos(t, tr)
		if err := tr.set(ctx, bob, Online, nil); err != nil {
			t.Fatal(err)
		}
		s, err := presencestore.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		strangers := make([]presencestore.Presence, maxScan+10)
		for i := range strangers {
			strangers[i] = presencestore.Presence{UserID: fmt.Sprintf("@u%d:%s", i, server), State: Online, SetBy: bySync, LastActiveTS: 1}
		}
		if err := s.Write(ctx, strangers); err != nil {
			t.Fatal(err)
		}
		end, err := s.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.collect(tr, alice, start, end, false, nil); !slices.Equal(senders(got), ids(bob)) {
			t.Fatalf("after a long gap: %v", senders(got))
		}
	})
}
