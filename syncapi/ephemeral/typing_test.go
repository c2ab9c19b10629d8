package ephemeral

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

// clock is a settable time for positions.
type clock struct{ us atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.us.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMicro())
	return c
}

func (c *clock) now() time.Time          { return time.UnixMicro(c.us.Load()) }
func (c *clock) advance(d time.Duration) { c.us.Add(d.Microseconds()) }

func pos(t *testing.T, s synctypes.Source) int64 {
	t.Helper()
	p, err := s.Position(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// collect runs a source's Collect and returns each room's ephemeral events by type.
func collect(t *testing.T, s synctypes.Source, req *synctypes.Request, from, to int64) map[id.RoomID]map[string][]json.RawMessage {
	t.Helper()
	resp := synctypes.NewResponse()
	if err := s.Collect(context.Background(), req, from, to, resp); err != nil {
		t.Fatal(err)
	}
	out := map[id.RoomID]map[string][]json.RawMessage{}
	for room, jr := range resp.Rooms.Join {
		out[room] = map[string][]json.RawMessage{}
		for _, raw := range jr.Ephemeral.Events {
			var ev struct {
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			out[room][ev.Type] = append(out[room][ev.Type], ev.Content)
		}
	}
	return out
}

// typersIn returns the user_ids of the one m.typing event of a room, and false without one.
func typersIn(t *testing.T, got map[id.RoomID]map[string][]json.RawMessage, room id.RoomID) ([]id.UserID, bool) {
	t.Helper()
	evs := got[room]["m.typing"]
	if len(evs) == 0 {
		return nil, false
	}
	if len(evs) > 1 {
		t.Fatalf("%d m.typing events in %s", len(evs), room)
	}
	var c struct {
		UserIDs []id.UserID `json:"user_ids"`
	}
	if err := json.Unmarshal(evs[0], &c); err != nil || c.UserIDs == nil {
		t.Fatalf("m.typing content %s: %v", evs[0], err)
	}
	return c.UserIDs, true
}

func TestTypingPositionsAndCollect(t *testing.T) {
	c := newClock()
	ty := newTyping(nil, c.now)
	defer ty.close()
	start := pos(t, ty)
	if start != c.us.Load() {
		t.Fatalf("start position %d, want the start time %d", start, c.us.Load())
	}
	bob := &synctypes.Request{User: "@bob:x", Joined: []id.RoomID{"!a:x", "!b:x"}}

	ty.Set("!a:x", "@alice:x", true, time.Hour)
	p1 := pos(t, ty)
	if p1 != start+1 {
		t.Fatalf("first change at %d, want %d (one above the last within the same microsecond)", p1, start+1)
	}
	got := collect(t, ty, bob, start, p1)
	if users, ok := typersIn(t, got, "!a:x"); !ok || !slices.Equal(users, []id.UserID{"@alice:x"}) {
		t.Fatalf("after alice starts: %v, %v", users, ok)
	}
	if _, ok := got["!b:x"]; ok {
		t.Fatal("unchanged room !b got an event")
	}
	if got := collect(t, ty, bob, p1, p1); len(got) != 0 {
		t.Fatalf("empty window: %v", got)
	}

	// Renewing changes nothing a client sees, so it takes no position.
	ty.Set("!a:x", "@alice:x", true, time.Hour)
	if pos(t, ty) != p1 {
		t.Fatal("renewal moved the position")
	}

	c.advance(time.Second)
	ty.Set("!a:x", "@carol:x", true, time.Hour)
	p2 := pos(t, ty)
	if p2 != c.us.Load() {
		t.Fatalf("change a second later at %d, want the time %d", p2, c.us.Load())
	}
	if users, _ := typersIn(t, collect(t, ty, bob, p1, p2), "!a:x"); !slices.Equal(users, []id.UserID{"@alice:x", "@carol:x"}) {
		t.Fatalf("typers %v", users)
	}

	// Stopping sends the shorter list; stopping again changes nothing.
	ty.Set("!a:x", "@alice:x", false, 0)
	ty.Set("!a:x", "@carol:x", false, 0)
	p3 := pos(t, ty)
	ty.Set("!a:x", "@carol:x", false, 0)
	if pos(t, ty) != p3 {
		t.Fatal("stopping a non-typer moved the position")
	}
	if users, ok := typersIn(t, collect(t, ty, bob, p2, p3), "!a:x"); !ok || len(users) != 0 {
		t.Fatalf("after both stop: %v, %v", users, ok)
	}

	// An initial sync gets the rooms where someone types, only those the user is joined to.
	ty.Set("!b:x", "@alice:x", true, time.Hour)
	ty.Set("!c:x", "@alice:x", true, time.Hour)
	p4 := pos(t, ty)
	initial := &synctypes.Request{User: "@bob:x", Joined: bob.Joined, Initial: true}
	got = collect(t, ty, initial, 0, p4)
	if _, ok := got["!a:x"]; ok || len(got) != 1 {
		t.Fatalf("initial sync: %v", got)
	}
	if users, _ := typersIn(t, got, "!b:x"); !slices.Equal(users, []id.UserID{"@alice:x"}) {
		t.Fatalf("initial sync typers of !b: %v", users)
	}

	// The ephemeral filter can leave m.typing out.
	filtered := &synctypes.Request{User: "@bob:x", Joined: bob.Joined, Initial: true,
		Filter: &synctypes.Filter{Room: &synctypes.RoomFilter{Ephemeral: &synctypes.RoomEventFilter{EventFilter: synctypes.EventFilter{NotTypes: []string{"m.typ*"}}}}}}
	if got := collect(t, ty, filtered, 0, p4); len(got) != 0 {
		t.Fatalf("filtered out m.typing, got %v", got)
	}
}

// TestTypingRestart: a later process starts above every position of the earlier one, and a
// token from the earlier one gets every joined room's typing list, clearing stale typers.
func TestTypingRestart(t *testing.T) {
	c := newClock()
	old := newTyping(nil, c.now)
	for range 1000 { // a burst: positions run ahead of the clock
		old.Set("!a:x", "@alice:x", true, time.Hour)
		old.Set("!a:x", "@alice:x", false, 0)
	}
	old.Set("!a:x", "@alice:x", true, time.Hour)
	oldPos := pos(t, old)
	old.close()

	c.advance(time.Second) // the restart
	ty := newTyping(nil, c.now)
	defer ty.close()
	if pos(t, ty) <= oldPos {
		t.Fatalf("new process starts at %d, not above %d", pos(t, ty), oldPos)
	}
	req := &synctypes.Request{User: "@bob:x", Joined: []id.RoomID{"!a:x", "!b:x"}}
	got := collect(t, ty, req, oldPos, pos(t, ty))
	for _, room := range req.Joined {
		if users, ok := typersIn(t, got, room); !ok || len(users) != 0 {
			t.Fatalf("room %s after restart: %v, %v", room, users, ok)
		}
	}
}

// TestTypingExpiry: a typer whose timeout passes is removed at a new position, and the room's
// waiters are woken.
func TestTypingExpiry(t *testing.T) {
	nf := notifier.New()
	defer nf.Close()
	ty := newTyping(nf, time.Now)
	defer ty.close()
	ty.Set("!a:x", "@alice:x", true, 20*time.Millisecond)
	started := pos(t, ty)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nf.Wait(ctx, map[string]int64{synctypes.StreamTyping: started}, roomserver.RoomKey("!a:x")); err != nil {
		t.Fatalf("no wake-up for the expiry: %v", err)
	}
	if typers := ty.Typers("!a:x"); len(typers) != 0 {
		t.Fatalf("still typing after the timeout: %v", typers)
	}
	expired := pos(t, ty)
	if expired <= started {
		t.Fatalf("expiry at %d, not after %d", expired, started)
	}
	got := collect(t, ty, &synctypes.Request{User: "@bob:x", Joined: []id.RoomID{"!a:x"}}, started, expired)
	if users, ok := typersIn(t, got, "!a:x"); !ok || len(users) != 0 {
		t.Fatalf("expiry delivered as %v, %v", users, ok)
	}

	// A renewal replaces the timer: the old one is stopped, and had it fired already, its late
	// run must not end the new typing.
	ty.Set("!a:x", "@alice:x", true, time.Hour)
	first := ty.rooms["!a:x"]["@alice:x"]
	ty.Set("!a:x", "@alice:x", true, time.Hour)
	renewed := pos(t, ty)
	if first.timer.Stop() {
		t.Fatal("the replaced timer was still running")
	}
	ty.expire("!a:x", "@alice:x", first)
	if pos(t, ty) != renewed || len(ty.Typers("!a:x")) != 1 {
		t.Fatal("the replaced timer ended the renewed typing")
	}
}

// TestTypingClose: after Close, timers are stopped and updates ignored.
func TestTypingClose(t *testing.T) {
	ty := newTyping(nil, time.Now)
	ty.Set("!a:x", "@alice:x", true, 10*time.Millisecond)
	ty.close()
	p := pos(t, ty)
	ty.Set("!a:x", "@bob:x", true, time.Hour)
	if pos(t, ty) != p {
		t.Fatal("update after close was taken")
	}
}

// TestTypingTokenWithoutStream: a token that predates the typing stream (position 0) gets the
// rooms where someone types, as an initial sync does.
func TestTypingTokenWithoutStream(t *testing.T) {
	ty := newTyping(nil, time.Now)
	defer ty.close()
	ty.Set("!a:x", "@alice:x", true, time.Hour)
	got := collect(t, ty, &synctypes.Request{User: "@bob:x", Joined: []id.RoomID{"!a:x", "!b:x"}}, 0, pos(t, ty))
	if users, ok := typersIn(t, got, "!a:x"); !ok || len(users) != 1 || len(got) != 1 {
		t.Fatalf("token without typing position: %v", got)
	}
}
