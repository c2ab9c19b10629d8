package roomstore

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestGenCache(t *testing.T) {
	c := newGenCache[int, int](10)
	for i := range 1000 {
		c.put(i, i*2)
		if c.len() > 10 {
			t.Fatalf("%d entries, bound 10", c.len())
		}
		// An entry in use survives however many others pass through.
		if v, ok := c.get(0); !ok || v != 0 {
			t.Fatalf("entry in use evicted after %d puts", i)
		}
	}
	if _, ok := c.get(500); ok {
		t.Error("an old entry outlived the bound")
	}
	if v, ok := c.get(999); !ok || v != 1998 {
		t.Errorf("newest entry: %d %v", v, ok)
	}
	c.put(999, 7) // overwriting does not duplicate
	if v, _ := c.get(999); v != 7 || c.len() > 10 {
		t.Errorf("overwrite: %d, %d entries", v, c.len())
	}
}

// TestStateKeyCacheBound numbers more state keys than the cache holds: the bound holds, and
// every lookup after eviction, either way round, answers from the database as before.
func TestStateKeyCacheBound(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		migrated(t, db)
		const bound, n = 16, 300
		s := newStore(db, bound, bound)
		keys := make([]StateKey, n)
		for i := range keys {
			keys[i] = StateKey{Type: "m.room.member", StateKey: fmt.Sprintf("@u%d:x", i)}
		}
		checkBound := func(when string) {
			t.Helper()
			if sk, _ := s.CacheSizes(); sk > bound {
				t.Fatalf("%s: %d state keys cached, bound %d", when, sk, bound)
			}
		}
		nids := make([]int64, n)
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			for i := 0; i < n; i += 7 {
				got, err := s.StateKeyNIDs(ctx, tx, keys[i:min(i+7, n)])
				if err != nil {
					return err
				}
				copy(nids[i:], got)
				checkBound("numbering")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64]StateKey{}
		for i, k := range keys {
			if nids[i] == 0 || want[nids[i]] != (StateKey{}) {
				t.Fatalf("key %v numbered %d twice or not at all", k, nids[i])
			}
			want[nids[i]] = k
		}
		for round := range 2 {
			got, err := s.StateKeys(ctx, db, nids)
			if err != nil || !maps.Equal(got, want) {
				t.Fatalf("round %d: state keys after eviction: %d of %d right, %v", round, len(got), n, err)
			}
			checkBound("reading state keys")
			known, err := s.KnownStateKeyNIDs(ctx, db, append(keys, StateKey{Type: "m.room.name"}))
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range keys {
				if known[i] != nids[i] {
					t.Fatalf("known number of %v: %d, want %d", k, known[i], nids[i])
				}
			}
			if known[n] != 0 {
				t.Errorf("an unknown key got number %d", known[n])
			}
			checkBound("looking up known keys")
			err = db.WithTx(ctx, func(tx *storage.Tx) error {
				again, err := s.StateKeyNIDs(ctx, tx, keys)
				for i := range again {
					if again[i] != nids[i] {
						return fmt.Errorf("%v renumbered %d, was %d", keys[i], again[i], nids[i])
					}
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			checkBound("numbering again")
		}
		var rows int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM room_state_keys`).Scan(&rows); err != nil || rows != n {
			t.Errorf("%d state key rows, want %d: %v", rows, n, err)
		}
	})
}

// insertEvents stores n events of room 1 and returns them in order.
func insertEvents(t testing.TB, db *storage.DB, s *Store, prefix string, n int) []*Event {
	t.Helper()
	ctx := context.Background()
	var evs []*Event
	err := db.WithTx(ctx, func(tx *storage.Tx) error {
		evs = evs[:0]
		for i := range n {
			e := &Event{EventID: fmt.Sprintf("$%s%d", prefix, i), RoomNID: 1, Type: "m.room.message", Depth: int64(i),
				JSON: fmt.Appendf(nil, `{"n":%d}`, i), StateBefore: 1}
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
	return evs
}

// TestEventIDCache: IDs are right whether they come from the cache, a range scan or single
// lookups, the cache stays within its bound, and IDs read inside a transaction are not cached,
// since on SQLite a rolled-back event's number is handed out again.
func TestEventIDCache(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		migrated(t, db)
		const bound = 50
		s := newStore(db, bound, bound)
		evs := insertEvents(t, db, s, "e", 3*minRangeScan)
		want := map[int64]string{}
		var all, sparse []int64
		for i, e := range evs {
			want[e.NID] = e.EventID
			all = append(all, e.NID)
			if i%3 == 0 {
				sparse = append(sparse, e.NID)
			}
		}
		unknown := evs[len(evs)-1].NID + 1000
		for _, list := range [][]int64{all, sparse, append(all, unknown, all[0]), all[:minRangeScan], {unknown}} {
			for round := range 2 { // cold, then partly cached
				got, err := s.EventIDs(ctx, db, list)
				if err != nil {
					t.Fatal(err)
				}
				wantHere := map[int64]string{}
				for _, n := range list {
					if id, ok := want[n]; ok {
						wantHere[n] = id
					}
				}
				if !maps.Equal(got, wantHere) {
					t.Fatalf("round %d of %d numbers: %d IDs, want %d", round, len(list), len(got), len(wantHere))
				}
				if _, ids := s.CacheSizes(); ids > bound {
					t.Fatalf("%d event IDs cached, bound %d", ids, bound)
				}
			}
		}

		// Inside a transaction nothing is cached; a number reused after a rollback reads right.
		fresh := newStore(db, bound, bound)
		errRollback := fmt.Errorf("roll back")
		var doomed int64
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			e := &Event{EventID: "$doomed", RoomNID: 1, Type: "m.room.message", JSON: []byte(`{}`), StateBefore: 1}
			if _, err := fresh.InsertEvent(ctx, tx, e); err != nil {
				return err
			}
			doomed = e.NID
			if got, err := fresh.EventIDs(ctx, tx, []int64{doomed}); err != nil || got[doomed] != "$doomed" {
				return fmt.Errorf("own event in the transaction: %v %v", got, err)
			}
			return errRollback
		})
		if err != errRollback {
			t.Fatal(err)
		}
		if _, ids := fresh.CacheSizes(); ids != 0 {
			t.Errorf("%d IDs cached from inside a transaction", ids)
		}
		next := insertEvents(t, db, fresh, "next", 1)[0]
		got, err := fresh.EventIDs(ctx, db, []int64{doomed, next.NID})
		if err != nil || got[next.NID] != "$next0" || (doomed == next.NID) != (got[doomed] == "$next0") || got[doomed] == "$doomed" {
			t.Errorf("after the rollback: %v %v (rolled-back number %d, new %d)", got, err, doomed, next.NID)
		}
	})
}

// TestEventJSONByNID reads events back both ways readByNumber reads them.
func TestEventJSONByNID(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		evs := insertEvents(t, db, s, "j", 2*minRangeScan)
		var dense, half, sparse []int64 // half is scanned on PostgreSQL, skipping every other row
		for i, e := range evs {
			dense = append(dense, e.NID)
			if i%2 == 0 {
				half = append(half, e.NID)
			}
			if i%4 == 0 {
				sparse = append(sparse, e.NID)
			}
		}
		for _, list := range [][]int64{dense, half, sparse, nil} {
			got, err := s.EventJSONByNID(ctx, db, append(list, -5))
			if err != nil || len(got) != len(list) {
				t.Fatalf("%d of %d events, %v", len(got), len(list), err)
			}
			for _, e := range evs {
				if g, ok := got[e.NID]; ok && (g.EventID != e.EventID || g.RoomNID != 1 || string(g.JSON) != string(e.JSON)) {
					t.Errorf("event %d read back as %+v", e.NID, g)
				}
			}
		}
	})
}

// BenchmarkEventIDs reads the IDs of 5 000 of 10 000 events with empty caches: all of a
// range, as for the state of a room whose members joined in a burst, and every other one.
func BenchmarkEventIDs(b *testing.B) {
	for _, engine := range storagetest.Engines() {
		b.Run(string(engine), func(b *testing.B) {
			db, err := storage.Open(context.Background(), storagetest.DSN(b, engine), storage.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			migrated(b, db)
			evs := insertEvents(b, db, newStore(db, 1, 1), "b", 10_000)
			var dense, sparse []int64
			for i, e := range evs {
				if i < 5_000 {
					dense = append(dense, e.NID)
				}
				if i%2 == 0 {
					sparse = append(sparse, e.NID)
				}
			}
			for name, list := range map[string][]int64{"dense": dense, "sparse": sparse} {
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						ids, err := newStore(db, 1, 1).EventIDs(context.Background(), db, list)
						if err != nil || len(ids) != len(list) {
							b.Fatal(len(ids), err)
						}
					}
				})
			}
		})
	}
}

// TestStateKeyRollback numbers a key in a transaction that rolls back, as WithTx does before it
// retries: the number must not outlive the transaction in the cache, or the retry would use it
// without storing the key, and on SQLite the next new key would be given it too.
func TestStateKeyRollback(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		migrated(t, db)
		s := newStore(db, MaxCachedStateKeys, 10)
		k, other := StateKey{"m.room.member", "@k:x"}, StateKey{"m.room.member", "@other:x"}
		errRollback := fmt.Errorf("roll back")
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			if _, err := s.StateKeyNIDs(ctx, tx, []StateKey{k}); err != nil {
				return err
			}
			return errRollback
		})
		if err != errRollback {
			t.Fatal(err)
		}
		var nids []int64
		err = db.WithTx(ctx, func(tx *storage.Tx) error { // the retry, then another key
			var err error
			nids, err = s.StateKeyNIDs(ctx, tx, []StateKey{k, other})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if nids[0] == nids[1] {
			t.Fatalf("%v and %v share number %d", k, other, nids[0])
		}
		for _, store := range []*Store{s, newStore(db, 10, 10)} { // cached, and from the database
			got, err := store.StateKeys(ctx, db, nids)
			if err != nil || got[nids[0]] != k || got[nids[1]] != other {
				t.Errorf("state keys %v: %v %v", nids, got, err)
			}
			known, err := store.KnownStateKeyNIDs(ctx, db, []StateKey{k, other})
			if err != nil || known[0] != nids[0] || known[1] != nids[1] {
				t.Errorf("known numbers %v, want %v: %v", known, nids, err)
			}
		}
	})
}
