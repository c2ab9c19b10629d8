package pushstore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func insert(t *testing.T, s *Store, db *storage.DB, b Batch) {
	t.Helper()
	if b.Actions == nil {
		b.Actions = json.RawMessage(`["notify"]`)
	}
	if err := db.WithTx(context.Background(), func(tx *storage.Tx) error { return s.Insert(context.Background(), tx, b) }); err != nil {
		t.Fatal(err)
	}
}

func markRead(t *testing.T, s *Store, db *storage.DB, user, room, thread string, upTo int64) {
	t.Helper()
	if err := db.WithTx(context.Background(), func(tx *storage.Tx) error {
		return s.MarkRead(context.Background(), tx, user, room, thread, upTo)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestCountsAndThreads(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		insert(t, s, db, Batch{Users: []string{"@a:x", "@b:x"}, EventPos: 1, RoomID: "!r", EventID: "$1", TS: 10})
		insert(t, s, db, Batch{Users: []string{"@a:x"}, EventPos: 2, RoomID: "!r", EventID: "$2", Highlight: true, TS: 11})
		insert(t, s, db, Batch{Users: []string{"@a:x"}, EventPos: 3, RoomID: "!r", EventID: "$3", ThreadID: "$root", TS: 12})
		insert(t, s, db, Batch{Users: []string{"@a:x"}, EventPos: 4, RoomID: "!s", EventID: "$4", TS: 13})
		// A retried batch changes nothing.
		insert(t, s, db, Batch{Users: []string{"@a:x"}, EventPos: 4, RoomID: "!s", EventID: "$4", TS: 13})

		got, err := s.Unread(ctx, "@a:x", []string{"!r", "!s", "!none"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]Counts{
			"!r": {"": {2, 1}, "$root": {1, 0}},
			"!s": {"": {1, 0}},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Unread = %v, want %v", got, want)
		}
		if n, _ := s.UnreadTotal(ctx, "@a:x"); n != 4 {
			t.Fatalf("UnreadTotal = %d, want 4", n)
		}

		// A threaded receipt reads its thread only; the main timeline keeps its counts.
		markRead(t, s, db, "@a:x", "!r", "$root", 3)
		got, _ = s.Unread(ctx, "@a:x", []string{"!r"})
		if fmt.Sprint(got) != fmt.Sprint(map[string]map[string]Counts{"!r": {"": {2, 1}}}) {
			t.Fatalf("after the thread receipt: %v", got)
		}
		// A main-timeline receipt at 1 reads only up to 1.
		markRead(t, s, db, "@a:x", "!r", "", 1)
		got, _ = s.Unread(ctx, "@a:x", []string{"!r"})
		if fmt.Sprint(got) != fmt.Sprint(map[string]map[string]Counts{"!r": {"": {1, 1}}}) {
			t.Fatalf("after the main receipt: %v", got)
		}
		// An unthreaded receipt reads everything up to it; other users are untouched.
		markRead(t, s, db, "@a:x", "!r", AllThreads, 3)
		got, _ = s.Unread(ctx, "@a:x", []string{"!r", "!s"})
		if fmt.Sprint(got) != fmt.Sprint(map[string]map[string]Counts{"!s": {"": {1, 0}}}) {
			t.Fatalf("after the unthreaded receipt: %v", got)
		}
		if got, _ := s.Unread(ctx, "@b:x", []string{"!r"}); got["!r"][""].Notifications != 1 {
			t.Fatalf("b's counts changed: %v", got)
		}

		list, err := s.List(ctx, "@a:x", 0, 10, false)
		if err != nil || len(list) != 4 || list[0].EventID != "$4" || !list[1].Read || list[0].Read {
			t.Fatalf("List = %+v, %v", list, err)
		}
		page, _ := s.List(ctx, "@a:x", list[1].EventPos, 10, false)
		if len(page) != 2 || page[0].EventID != "$2" {
			t.Fatalf("second page = %+v", page)
		}
		hl, _ := s.List(ctx, "@a:x", 0, 10, true)
		if len(hl) != 1 || hl[0].EventID != "$2" || !hl[0].Highlight {
			t.Fatalf("highlights = %+v", hl)
		}

		users, reached, err := s.UsersAfter(ctx, 1)
		if err != nil || len(users) != 1 || users[0] != "@a:x" || reached != 4 {
			t.Fatalf("UsersAfter(1) = %v, %d, %v", users, reached, err)
		}
		after, _ := s.After(ctx, "@a:x", 2, 12, 10)
		if len(after) != 2 || after[0].EventID != "$3" {
			t.Fatalf("After = %+v", after)
		}

		if _, ok, _ := s.Cursor(ctx, "@a:x", "app", "key"); ok {
			t.Fatal("cursor before any was set")
		}
		if err := s.SetCursor(ctx, "@a:x", "app", "key", 3); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCursor(ctx, "@a:x", "app", "key", 4); err != nil {
			t.Fatal(err)
		}
		if pos, ok, _ := s.Cursor(ctx, "@a:x", "app", "key"); !ok || pos != 4 {
			t.Fatalf("cursor = %d, %v", pos, ok)
		}
		if err := s.DeleteCursor(ctx, "@a:x", "app", "key"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Cursor(ctx, "@a:x", "app", "key"); ok {
			t.Fatal("cursor survived its deletion")
		}
	})
}

// TestInsertManyUsers writes the notifications of a message into a 10 000-member room in one
// statement.
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
		insert(t, s, db, Batch{Users: users, EventPos: 7, RoomID: "!big", EventID: "$m", TS: 1})
		got, _ := s.Unread(ctx, "@u9999:x", []string{"!big"})
		if got["!big"][""].Notifications != 1 {
			t.Fatalf("counts of the last user: %v", got)
		}
	})
}
