package roomstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestLightLookups(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		empty := ""
		var roomNID int64
		var evs []*Event
		err = db.WithTx(ctx, func(tx *storage.Tx) error {
			if roomNID, err = s.CreateRoom(ctx, tx, "!r:x", "10"); err != nil {
				return err
			}
			if _, err := s.StateKeyNIDs(ctx, tx, []StateKey{{"m.room.create", ""}}); err != nil {
				return err
			}
			// 1200 events: more than two batches of the IN lists.
			for i := range 1200 {
				e := &Event{EventID: fmt.Sprintf("$e%d", i), RoomNID: roomNID, Type: "m.room.message", Depth: int64(i), JSON: []byte(`{}`),
					StateBefore: 7, Rejected: i%3 == 0, Outlier: i%5 == 0, SoftFailed: i%7 == 0, StreamPos: int64(i)}
				if i == 0 {
					e.Type, e.StateKey = "m.room.create", &empty
				}
				if _, err := s.InsertEvent(ctx, tx, e); err != nil {
					return err
				}
				evs = append(evs, e)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		var nids []int64
		for _, e := range evs {
			ids, nids = append(ids, e.EventID), append(nids, e.NID)
		}
		byID, err := s.EventNIDs(ctx, db, append(slices.Clone(ids), "$unknown"))
		if err != nil || len(byID) != len(evs) {
			t.Fatalf("event numbers: %d, %v", len(byID), err)
		}
		byNID, err := s.EventIDs(ctx, db, append(slices.Clone(nids), 1<<40))
		if err != nil || len(byNID) != len(evs) {
			t.Fatalf("event IDs: %d, %v", len(byNID), err)
		}
		for _, e := range evs {
			if byID[e.EventID] != e.NID || byNID[e.NID] != e.EventID {
				t.Fatalf("%s ↔ %d: %d, %s", e.EventID, e.NID, byID[e.EventID], byNID[e.NID])
			}
		}
		hs, err := s.EventHeadersByID(ctx, db, ids)
		if err != nil || len(hs) != len(evs) {
			t.Fatalf("headers: %d, %v", len(hs), err)
		}
		hn, err := s.EventHeadersByNID(ctx, db, nids[:3])
		if err != nil || len(hn) != 3 {
			t.Fatalf("headers by number: %d, %v", len(hn), err)
		}
		for _, h := range hs {
			e := evs[h.Depth]
			if h.NID != e.NID || h.JSON != nil || h.Rejected != e.Rejected || h.Outlier != e.Outlier || h.SoftFailed != e.SoftFailed ||
				h.StreamPos != e.StreamPos || h.StateBefore != 7 || h.RoomNID != roomNID || (h.StateKey != nil) != (h.Depth == 0) {
				t.Fatalf("header %+v of %+v", h, e)
			}
		}

		known, err := s.KnownStateKeyNIDs(ctx, db, []StateKey{{"m.room.create", ""}, {"m.room.name", ""}})
		if err != nil || known[0] == 0 || known[1] != 0 {
			t.Errorf("known state keys: %v %v", known, err)
		}
		cold := newStore(db, 10, 10)
		if again, err := cold.KnownStateKeyNIDs(ctx, db, []StateKey{{"m.room.create", ""}}); err != nil || again[0] != known[0] {
			t.Errorf("known state keys with a cold cache: %v %v", again, err)
		}
		if room, err := s.RoomByNID(ctx, db, roomNID); err != nil || room.ID != "!r:x" || room.Version != "10" {
			t.Errorf("room by number: %+v %v", room, err)
		}
		if _, err := s.RoomByNID(ctx, db, roomNID+100); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown room by number: %v", err)
		}
	})
}

func TestChainsLookupAndForget(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		if err := Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		c := NewChains(1000)
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			if err := c.Add(ctx, tx, 1, 1, nil); err != nil {
				return err
			}
			if err := c.Add(ctx, tx, 1, 2, []int64{1}); err != nil {
				return err
			}
			return c.Add(ctx, tx, 1, 3, []int64{2})
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, chains := range []*Chains{c, NewChains(1000)} { // warm and cold
			got, err := chains.Lookup(ctx, db, []int64{3, 1, 99})
			if err != nil || len(got) != 2 || !slices.Equal(got[3], []int64{1, 2}) || len(got[1]) != 0 {
				t.Errorf("lookup: %v %v", got, err)
			}
			if _, ok := got[99]; ok {
				t.Error("lookup invented a chain")
			}
		}
		c.Forget(3, 42)
		if _, ok := c.cache[3]; ok || c.size != 3 {
			t.Errorf("forget left %v, size %d", c.cache, c.size)
		}
	})
}
