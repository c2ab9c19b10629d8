package pushstore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func tx(t *testing.T, db *storage.DB, fn func(tx *storage.Tx) error) {
	t.Helper()
	if err := db.WithTx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func ev(pos int64, room, thread, sender string, highlight bool) Event {
	return Event{EventPos: pos, RoomID: room, EventID: fmt.Sprintf("$%d", pos), ThreadID: thread, Sender: sender,
		Highlight: highlight, Actions: json.RawMessage(`["notify"]`), TS: 100 + pos}
}

func unread(t *testing.T, s *Store, user string, rooms map[string]int64) string {
	t.Helper()
	got, err := s.Unread(context.Background(), user, rooms)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(got)
}

// TestCounts: one row per event serves every member; own rows override it; read positions per
// thread, unthreaded ones for all; the join position bounds what counts.
func TestCounts(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		tx(t, db, func(tx *storage.Tx) error {
			for _, e := range []Event{ev(1, "!r", "", "@x:s", false), ev(2, "!r", "", "@x:s", false), ev(3, "!r", "$root", "@x:s", false),
				ev(4, "!s", "", "@x:s", false), ev(5, "!r", "", "@a:s", false)} {
				if err := s.InsertEvent(ctx, tx, e); err != nil {
					return err
				}
			}
			// A repeated write changes nothing.
			if err := s.InsertEvent(ctx, tx, ev(1, "!r", "", "@x:s", false)); err != nil {
				return err
			}
			// a is mentioned in 2 (highlight), and has muted event 4.
			mention := ev(2, "!r", "", "@x:s", true)
			if err := s.Insert(ctx, tx, Batch{Event: mention, Users: []string{"@a:s"}, Notify: true}); err != nil {
				return err
			}
			return s.Insert(ctx, tx, Batch{Event: ev(4, "!s", "", "@x:s", false), Users: []string{"@a:s"}, Notify: false})
		})
		rooms := map[string]int64{"!r": 0, "!s": 0}
		// a: 1, 2 (own, highlight), 3 in the thread; 5 is a's own; 4 is muted.
		if got, want := unread(t, s, "@a:s", rooms), "map[!r:map[:{2 1} $root:{1 0}]]"; got != want {
			t.Fatalf("a's counts = %s, want %s", got, want)
		}
		// b gets the default outcome everywhere, 5 included.
		if got, want := unread(t, s, "@b:s", rooms), "map[!r:map[:{3 0} $root:{1 0}] !s:map[:{1 0}]]"; got != want {
			t.Fatalf("b's counts = %s, want %s", got, want)
		}
		// c joined !r at 2: only what came after counts.
		if got, want := unread(t, s, "@c:s", map[string]int64{"!r": 2}), "map[!r:map[:{1 0} $root:{1 0}]]"; got != want {
			t.Fatalf("c's counts = %s, want %s", got, want)
		}

		// A thread's receipt reads that thread only; a main-timeline one the main timeline.
		tx(t, db, func(tx *storage.Tx) error { return s.MarkRead(ctx, tx, "@b:s", "!r", "$root", 3) })
		if got, want := unread(t, s, "@b:s", rooms), "map[!r:map[:{3 0}] !s:map[:{1 0}]]"; got != want {
			t.Fatalf("after the thread receipt: %s, want %s", got, want)
		}
		tx(t, db, func(tx *storage.Tx) error { return s.MarkRead(ctx, tx, "@b:s", "!r", "", 2) })
		if got, want := unread(t, s, "@b:s", rooms), "map[!r:map[:{1 0}] !s:map[:{1 0}]]"; got != want {
			t.Fatalf("after the main receipt: %s, want %s", got, want)
		}
		// Read positions never move back; an unthreaded one reads every thread.
		tx(t, db, func(tx *storage.Tx) error { return s.MarkRead(ctx, tx, "@b:s", "!r", "", 1) })
		tx(t, db, func(tx *storage.Tx) error { return s.MarkRead(ctx, tx, "@b:s", "!s", AllThreads, 4) })
		if got, want := unread(t, s, "@b:s", rooms), "map[!r:map[:{1 0}]]"; got != want {
			t.Fatalf("after the unthreaded receipt: %s, want %s", got, want)
		}
		tx(t, db, func(tx *storage.Tx) error { return s.MarkRead(ctx, tx, "@a:s", "!r", AllThreads, 5) })
		if got := unread(t, s, "@a:s", rooms); got != "map[]" {
			t.Fatalf("a after reading everything: %s", got)
		}

		// a's list: own highlight 2, defaults 1 and 3; not 4 (muted) nor 5 (a's own event).
		list, err := s.List(ctx, "@a:s", rooms, 0, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, n := range list {
			ids = append(ids, fmt.Sprintf("%s %v %v", n.EventID, n.Highlight, n.Read))
		}
		if fmt.Sprint(ids) != "[$3 false true $2 true true $1 false true]" {
			t.Fatalf("List = %v", ids)
		}
		page, _ := s.List(ctx, "@a:s", rooms, 2, 10, false)
		if len(page) != 1 || page[0].EventID != "$1" {
			t.Fatalf("second page = %+v", page)
		}
		hl, _ := s.List(ctx, "@a:s", rooms, 0, 10, true)
		if len(hl) != 1 || hl[0].EventID != "$2" {
			t.Fatalf("highlights = %+v", hl)
		}
		after, _ := s.After(ctx, "@b:s", rooms, 1, 0, 10)
		if len(after) != 4 || after[0].EventID != "$2" || after[3].EventID != "$5" {
			t.Fatalf("After = %+v", after)
		}
		if after, _ := s.After(ctx, "@b:s", rooms, 0, 105, 10); len(after) != 1 || after[0].EventID != "$5" {
			t.Fatalf("After since 105 = %+v", after)
		}

		rs, users, reached, err := s.NotifiedSince(ctx, 3)
		if err != nil || fmt.Sprint(rs) != "[!r !s]" && fmt.Sprint(rs) != "[!s !r]" || len(users) != 0 || reached != 5 {
			t.Fatalf("NotifiedSince(3) = %v %v %d %v", rs, users, reached, err)
		}
		if pos, _ := s.PosBefore(ctx, "@a:s", 103); pos != 2 {
			t.Fatalf("PosBefore = %d", pos)
		}

		if _, ok, _ := s.Cursor(ctx, "@a:s", "app", "key"); ok {
			t.Fatal("cursor before any was set")
		}
		for _, pos := range []int64{3, 4} {
			if err := s.SetCursor(ctx, "@a:s", "app", "key", pos); err != nil {
				t.Fatal(err)
			}
		}
		if pos, ok, _ := s.Cursor(ctx, "@a:s", "app", "key"); !ok || pos != 4 {
			t.Fatalf("cursor = %d, %v", pos, ok)
		}
		if err := s.DeleteCursor(ctx, "@a:s", "app", "key"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Cursor(ctx, "@a:s", "app", "key"); ok {
			t.Fatal("cursor survived its deletion")
		}
	})
}

// TestInsertManyUsers writes the own outcomes of 10 000 users of one event in one statement.
func TestInsertManyUsers(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		users := make([]string, 10_000)
		for i := range users {
			users[i] = fmt.Sprintf("@u%d:x", i)
		}
		tx(t, db, func(tx *storage.Tx) error {
			return s.Insert(ctx, tx, Batch{Event: ev(7, "!big", "", "@x:x", true), Users: users, Notify: true})
		})
		if got := unread(t, s, "@u9999:x", map[string]int64{"!big": 0}); got != "map[!big:map[:{1 1}]]" {
			t.Fatalf("counts of the last user: %s", got)
		}
	})
}
