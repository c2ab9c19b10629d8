package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
	"github.com/latticehq/lattice/storage/storagetest"
)

func newRoomserver(t testing.TB, db *storage.DB, key *federation.SigningKey, nf *notifier.Notifier) *Roomserver {
	t.Helper()
	rs, err := New(context.Background(), db, Options{ServerName: "example.test", SigningKey: key, Notifier: nf})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func message(sender id.UserID, body string) Template {
	return Template{Type: "m.room.message", Sender: sender, Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body))}
}

func TestCreateRoomEveryVersion(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		key := federation.GenerateSigningKey()
		nf := notifier.New()
		rs := newRoomserver(t, db, key, nf)
		alice := id.UserID("@alice:example.test")
		for _, v := range SupportedVersions {
			t.Run(string(v), func(t *testing.T) {
				name := "Room " + string(v)
				roomID, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: alice, Version: v, Preset: PresetPublicChat, Name: &name})
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				if got := strings.Contains(string(roomID), ":"); got == v.RoomIDIsCreateEventID() {
					t.Errorf("room ID %s has the wrong form for v%s", roomID, v)
				}
				state, err := rs.CurrentState(ctx, roomID)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range []auth.StateKey{{Type: "m.room.create"}, {Type: "m.room.member", StateKey: string(alice)}, {Type: "m.room.power_levels"},
					{Type: "m.room.join_rules"}, {Type: "m.room.history_visibility"}, {Type: "m.room.guest_access"}, {Type: "m.room.name"}} {
					if state[k] == nil {
						t.Errorf("state lacks %v", k)
					}
				}
				since := nf.Latest(roomstore.StreamOutput)
				ev, err := rs.Send(ctx, roomID, message(alice, "hello"))
				if err != nil {
					t.Fatalf("send: %v", err)
				}
				if nf.Latest(roomstore.StreamOutput) <= since {
					t.Error("send woke no one")
				}
				before, err := rs.StateBefore(ctx, ev.EventID())
				if err != nil || len(before) != len(state) {
					t.Errorf("state before the message: %d entries, %v", len(before), err)
				}
				if got, err := rs.Event(ctx, ev.EventID()); err != nil || got == nil || got.EventID() != ev.EventID() {
					t.Errorf("event by ID: %v %v", got, err)
				}
				_, err = rs.Send(ctx, roomID, message("@mallory:example.test", "let me in"))
				if !errors.Is(err, ErrNotAllowed) {
					t.Errorf("a non-member sent a message: %v", err)
				}
				bob := id.UserID("@bob:example.test")
				join := Template{Type: "m.room.member", StateKey: ptr(string(bob)), Sender: bob, Content: json.RawMessage(`{"membership":"join"}`)}
				if _, err := rs.Send(ctx, roomID, join); err != nil {
					t.Errorf("join a public room: %v", err)
				}
				if m, _ := rs.StateEvent(ctx, roomID, "m.room.member", string(bob)); m == nil {
					t.Error("bob's join is not in the current state")
				}

				// A restarted roomserver finds the room as it was and builds on it.
				again := newRoomserver(t, db, key, nf)
				st2, err := again.CurrentState(ctx, roomID)
				if err != nil || len(st2) != len(state)+1 {
					t.Fatalf("state after restart: %d entries, %v", len(st2), err)
				}
				next, err := again.Send(ctx, roomID, message(bob, "after restart"))
				if err != nil {
					t.Fatalf("send after restart: %v", err)
				}
				if next.Depth() <= ev.Depth() {
					t.Errorf("depth %d after %d", next.Depth(), ev.Depth())
				}
			})
		}
		if _, err := rs.Send(ctx, "!nope:example.test", message(alice, "x")); !errors.Is(err, ErrRoomNotFound) {
			t.Errorf("send to an unknown room: %v", err)
		}
		if _, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: alice, Version: "99"}); !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("unsupported version: %v", err)
		}
	})
}

// BenchmarkSendMessage sends messages into a public room with 10 000 joined members, 2 000 of
// them named in its power levels (about as many as fit in one 64 KiB event), on SQLite; the
// issue's target is a median of 3 ms per message.
func BenchmarkSendMessage(b *testing.B) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rs := newRoomserver(b, db, federation.GenerateSigningKey(), notifier.New())
	alice := id.UserID("@alice:example.test")
	roomID, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	if err != nil {
		b.Fatal(err)
	}
	users := map[string]int{string(alice): 100}
	for i := range 10_000 {
		u := id.UserID(fmt.Sprintf("@u%d:example.test", i))
		if _, err := rs.Send(ctx, roomID, Template{Type: "m.room.member", StateKey: ptr(string(u)), Sender: u, Content: json.RawMessage(`{"membership":"join"}`)}); err != nil {
			b.Fatal(err)
		}
		if i < 2_000 {
			users[string(u)] = 10
		}
	}
	pl, _ := json.Marshal(map[string]any{"users": users, "state_default": 50, "events_default": 0})
	if _, err := rs.Send(ctx, roomID, Template{Type: "m.room.power_levels", StateKey: ptr(""), Sender: alice, Content: pl}); err != nil {
		b.Fatal(err)
	}
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := rs.Send(ctx, roomID, message(alice, fmt.Sprint("message ", i))); err != nil {
			b.Fatal(err)
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Microseconds())/1000, "median-ms")
}

// TestRoomCacheBounded fills the room cache past its bound on state entries: rooms are dropped
// and come back from storage unchanged.
func TestRoomCacheBounded(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		key := federation.GenerateSigningKey()
		rs := newRoomserver(t, db, key, notifier.New())
		rs.maxStateEntries = 15
		alice := id.UserID("@alice:example.test")
		var rooms []id.RoomID
		for range 4 {
			r, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
			if err != nil {
				t.Fatal(err)
			}
			rooms = append(rooms, r)
		}
		for _, r := range rooms {
			st, err := rs.CurrentState(ctx, r)
			if err != nil || len(st) != 6 {
				t.Fatalf("state of %s: %d entries, %v", r, len(st), err)
			}
			if cs := rs.CacheStats(); cs.StateEntries > 15 || cs.Rooms > 2 {
				t.Errorf("cache over its bound: %+v", cs)
			}
		}
		for _, r := range rooms {
			if _, err := rs.Send(ctx, r, message(alice, "still here")); err != nil {
				t.Fatalf("send into %s after eviction: %v", r, err)
			}
		}
		if cs := rs.CacheStats(); cs.Events.Entries == 0 || cs.ChainNIDs == 0 {
			t.Errorf("cache stats: %+v", cs)
		}
	})
}
