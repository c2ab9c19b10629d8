package presencestore

import (
	"context"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func users(ps []Presence) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.UserID)
	}
	return out
}

func TestWriteAndRead(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := s.Get(ctx, "@alice:x"); err != nil || p != nil {
			t.Fatalf("unknown user: %v %v", p, err)
		}
		if pos, err := s.Position(ctx); err != nil || pos != 0 {
			t.Fatalf("empty position: %d %v", pos, err)
		}
		busy := "busy"
		ps := []Presence{
			{UserID: "@alice:x", State: "online", LastActiveTS: 1000},
			{UserID: "@bob:x", State: "unavailable", StatusMsg: &busy, SetBy: "user", LastActiveTS: 2000},
		}
		if err := s.Write(ctx, ps); err != nil {
			t.Fatal(err)
		}
		if ps[0].Pos != 1 || ps[1].Pos != 2 {
			t.Fatalf("positions %d %d, want 1 2", ps[0].Pos, ps[1].Pos)
		}
		if pos, _ := s.Position(ctx); pos != 2 {
			t.Fatalf("position %d, want 2", pos)
		}
		got, err := s.Get(ctx, "@bob:x")
		if err != nil || got == nil || got.State != "unavailable" || got.StatusMsg == nil || *got.StatusMsg != "busy" || got.LastActiveTS != 2000 || got.Pos != 2 || got.SetBy != "user" {
			t.Fatalf("bob: %+v %v", got, err)
		}

		// Overwriting moves the row to a new position and clears the status message.
		alice := []Presence{{UserID: "@alice:x", State: "offline", LastActiveTS: 3000}}
		if err := s.Write(ctx, alice); err != nil {
			t.Fatal(err)
		}
		changed, err := s.Changed(ctx, 0, 3, 100)
		if err != nil || !slices.Equal(users(changed), []string{"@bob:x", "@alice:x"}) {
			t.Fatalf("changed (0, 3]: %v %v", users(changed), err)
		}
		if changed[1].State != "offline" || changed[1].StatusMsg != nil || changed[1].Pos != 3 {
			t.Fatalf("alice: %+v", changed[1])
		}
		if changed, _ := s.Changed(ctx, 2, 3, 100); !slices.Equal(users(changed), []string{"@alice:x"}) {
			t.Fatalf("changed (2, 3]: %v", users(changed))
		}
		if changed, _ := s.Changed(ctx, 0, 2, 100); !slices.Equal(users(changed), []string{"@bob:x"}) {
			t.Fatalf("changed (0, 2]: %v", users(changed))
		}
		if changed, _ := s.Changed(ctx, 0, 3, 1); !slices.Equal(users(changed), []string{"@bob:x"}) {
			t.Fatalf("changed (0, 3] limit 1: %v", users(changed))
		}
		if changed, _ := s.Changed(ctx, 3, 3, 100); len(changed) != 0 {
			t.Fatalf("empty range: %v", users(changed))
		}

		of, err := s.ChangedOf(ctx, []string{"@alice:x", "@carol:x"}, 0, 3)
		if err != nil || !slices.Equal(users(of), []string{"@alice:x"}) {
			t.Fatalf("changed of alice, carol: %v %v", users(of), err)
		}
		if of, _ := s.ChangedOf(ctx, []string{"@alice:x", "@bob:x"}, 1, 2); !slices.Equal(users(of), []string{"@bob:x"}) {
			t.Fatalf("changed of alice, bob in (1, 2]: %v", users(of))
		}

		active, err := s.NotOffline(ctx)
		if err != nil || !slices.Equal(users(active), []string{"@bob:x"}) {
			t.Fatalf("not offline: %v %v", users(active), err)
		}
	})
}

func TestSetLastActive(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, []Presence{{UserID: "@alice:x", State: "online", LastActiveTS: 1000}}); err != nil {
			t.Fatal(err)
		}
		// A later time is kept without a new position; an earlier one and unknown users are not.
		if err := s.SetLastActive(ctx, map[string]int64{"@alice:x": 5000, "@nobody:x": 7000}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetLastActive(ctx, map[string]int64{"@alice:x": 4000}); err != nil {
			t.Fatal(err)
		}
		p, err := s.Get(ctx, "@alice:x")
		if err != nil || p.LastActiveTS != 5000 || p.Pos != 1 {
			t.Fatalf("alice: %+v %v", p, err)
		}
		if p, _ := s.Get(ctx, "@nobody:x"); p != nil {
			t.Fatalf("unknown user got a row: %+v", p)
		}
		if pos, _ := s.Position(ctx); pos != 1 {
			t.Fatalf("position %d, want 1", pos)
		}
	})
}

// TestReopen: the data and the position survive closing and opening the database.
func TestReopen(t *testing.T) {
	for _, engine := range storagetest.Engines() {
		t.Run(string(engine), func(t *testing.T) {
			ctx := context.Background()
			dsn := storagetest.DSN(t, engine)
			db, err := storage.Open(ctx, dsn, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			msg := "lunch"
			if err := s.Write(ctx, []Presence{{UserID: "@alice:x", State: "unavailable", StatusMsg: &msg, LastActiveTS: 1}}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db, err = storage.Open(ctx, dsn, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			s, err = Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.Get(ctx, "@alice:x")
			if err != nil || p == nil || *p.StatusMsg != "lunch" || p.Pos != 1 {
				t.Fatalf("after reopen: %+v %v", p, err)
			}
			if pos, _ := s.Position(ctx); pos != 1 {
				t.Fatalf("position after reopen %d", pos)
			}
		})
	}
}
