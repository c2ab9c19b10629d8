package receiptstore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func open(t *testing.T, db *storage.DB) *Store {
	t.Helper()
	s, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t *testing.T, s *Store, rs ...Receipt) (int64, []Receipt) {
	t.Helper()
	pos, written, err := s.Put(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	return pos, written
}

func changed(t *testing.T, s *Store, rooms []string, from, to int64, viewer string) []Receipt {
	t.Helper()
	rs, err := s.Changed(context.Background(), rooms, from, to, viewer)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestPutAndChanged(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		s := open(t, db)
		r1 := Receipt{RoomID: "!a:x", UserID: "@alice:x", Type: "m.read", EventID: "$1", EventPos: 10, TS: 1000}
		pos, written := put(t, s, r1)
		if pos != 1 || len(written) != 1 || written[0].Pos != 1 {
			t.Fatalf("first put: pos %d, written %+v", pos, written)
		}
		// The same event again changes nothing and takes no position.
		if pos, written = put(t, s, r1); pos != 0 || len(written) != 0 {
			t.Fatalf("repeated put: pos %d, written %+v", pos, written)
		}
		// An earlier event does not move the receipt back; a later one does.
		back := r1
		back.EventID, back.EventPos = "$0", 5
		if pos, _ = put(t, s, back); pos != 0 {
			t.Fatalf("backwards receipt was written at %d", pos)
		}
		fwd := r1
		fwd.EventID, fwd.EventPos, fwd.TS = "$2", 20, 2000
		if pos, _ = put(t, s, fwd); pos != 2 {
			t.Fatalf("forward receipt at %d, want 2", pos)
		}
		// An event of unknown position (an outlier) is taken as it comes.
		unknown := r1
		unknown.EventID, unknown.EventPos = "$outlier", 0
		if pos, _ = put(t, s, unknown); pos != 3 {
			t.Fatalf("receipt of unknown position at %d, want 3", pos)
		}

		got := changed(t, s, []string{"!a:x"}, 0, 3, "@bob:x")
		if len(got) != 1 || got[0].EventID != "$outlier" || got[0].Pos != 3 || got[0].TS != 1000 {
			t.Fatalf("changed: %+v", got)
		}
		if got := changed(t, s, []string{"!a:x"}, 3, 3, "@bob:x"); len(got) != 0 {
			t.Fatalf("empty window gave %+v", got)
		}
		if got := changed(t, s, []string{"!a:x"}, 0, 2, "@bob:x"); len(got) != 0 {
			t.Fatalf("receipt at 3 is outside (0, 2]: %+v", got)
		}
		if got := changed(t, s, []string{"!other:x"}, 0, 3, "@bob:x"); len(got) != 0 {
			t.Fatalf("other room gave %+v", got)
		}
	})
}

func TestThreadsTypesAndPrivacy(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		s := open(t, db)
		base := Receipt{RoomID: "!a:x", UserID: "@alice:x", Type: "m.read", EventID: "$1", EventPos: 1, TS: 1}
		main, thread, private := base, base, base
		main.ThreadID = "main"
		thread.ThreadID, thread.EventID = "$root", "$2"
		private.Type = PrivateType
		pos, written := put(t, s, base, main, thread, private)
		if pos != 1 || len(written) != 4 {
			t.Fatalf("put of four keys: pos %d, written %d", pos, len(written))
		}
		if got := changed(t, s, []string{"!a:x"}, 0, 1, "@alice:x"); len(got) != 4 {
			t.Fatalf("owner sees %d receipts, want 4: %+v", len(got), got)
		}
		got := changed(t, s, []string{"!a:x"}, 0, 1, "@bob:x")
		if len(got) != 3 {
			t.Fatalf("other user sees %d receipts, want 3: %+v", len(got), got)
		}
		for _, r := range got {
			if r.Type == PrivateType {
				t.Fatalf("other user sees a private receipt: %+v", r)
			}
		}
	})
}

// TestManyRooms reads the receipts of thousands of rooms in one call, as an initial sync of a
// user in many rooms does.
func TestManyRooms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		s := open(t, db)
		var rooms []string
		var rs []Receipt
		for i := range 3000 {
			room := fmt.Sprintf("!r%d:x", i)
			rooms = append(rooms, room)
			if i%3 == 0 {
				rs = append(rs, Receipt{RoomID: room, UserID: "@alice:x", Type: "m.read", EventID: "$e", TS: 1})
			}
		}
		put(t, s, rs...)
		if got := changed(t, s, rooms, 0, 1, "@alice:x"); len(got) != 1000 {
			t.Fatalf("got %d receipts, want 1000", len(got))
		}
	})
}

// TestConcurrentPuts gives concurrent writers distinct positions with no gaps, and Open twice
// leaves the table as it is.
func TestConcurrentPuts(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		s := open(t, db)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				_, _, err := s.Put(context.Background(), []Receipt{{RoomID: "!a:x", UserID: fmt.Sprintf("@u%d:x", i), Type: "m.read", EventID: "$e", TS: 1}})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		s = open(t, db)
		got := changed(t, s, []string{"!a:x"}, 0, 100, "@alice:x")
		if len(got) != 20 {
			t.Fatalf("got %d receipts, want 20", len(got))
		}
		for i, r := range got {
			if r.Pos != int64(i+1) {
				t.Fatalf("receipt %d at position %d", i, r.Pos)
			}
		}
		if pos, err := db.StreamPosition(context.Background(), Stream); err != nil || pos != 20 {
			t.Fatalf("stream position %d, %v", pos, err)
		}
	})
}
