package roomstore

import (
	"context"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func migrated(t testing.TB, db *storage.DB) {
	t.Helper()
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
}

func add(t testing.TB, db *storage.DB, parent int64, changes []Entry) int64 {
	t.Helper()
	var nid int64
	err := db.WithTx(context.Background(), func(tx *storage.Tx) error {
		var err error
		nid, err = AddSnapshot(context.Background(), tx, 1, parent, changes)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return nid
}

func load(t testing.TB, db *storage.DB, nid int64) State {
	t.Helper()
	s, err := LoadState(context.Background(), db, nid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSnapshotsMatchAModel(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		migrated(t, db)
		rng := rand.New(rand.NewPCG(1, 2))
		model := State{}
		var snap int64
		type saved struct {
			nid   int64
			state State
		}
		var history []saved
		for i := range 400 {
			var changes []Entry
			for range 1 + rng.IntN(3) {
				key := int64(rng.IntN(150) + 1)
				ev := int64(i*10 + rng.IntN(10) + 1)
				if rng.IntN(20) == 0 {
					ev = 0 // a removal
				}
				changes = append(changes, Entry{key, ev})
			}
			snap = add(t, db, snap, changes)
			apply(model, normalise(append([]Entry(nil), changes...)))
			history = append(history, saved{snap, maps.Clone(model)})
		}
		for i, h := range history {
			if got := load(t, db, h.nid); !maps.Equal(got, h.state) {
				t.Fatalf("snapshot %d (step %d): %d entries, want %d", h.nid, i, len(got), len(h.state))
			}
		}
		if got := add(t, db, snap, nil); got != snap {
			t.Errorf("no changes made a new snapshot %d", got)
		}
		if got := load(t, db, 0); len(got) != 0 {
			t.Errorf("empty state has %d entries", len(got))
		}
		if _, err := LoadState(context.Background(), db, 1<<40); err == nil {
			t.Error("loading an unknown snapshot succeeded")
		}
	})
}

func TestSnapshotForks(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		migrated(t, db)
		var base int64
		for i := int64(1); i <= 100; i++ {
			base = add(t, db, base, []Entry{{i, i}})
		}
		left, right := base, base
		for i := int64(1); i <= 50; i++ {
			left = add(t, db, left, []Entry{{i, 1000 + i}})
			right = add(t, db, right, []Entry{{200 + i, 2000 + i}, {i, 0}})
		}
		l, r := load(t, db, left), load(t, db, right)
		if len(l) != 100 || l[1] != 1001 || l[100] != 100 {
			t.Errorf("left fork: %d entries, [1]=%d", len(l), l[1])
		}
		if len(r) != 100 || r[1] != 0 || r[251] != 0 || r[250] != 2050 || r[51] != 51 {
			t.Errorf("right fork: %d entries", len(r))
		}
		if b := load(t, db, base); len(b) != 100 || b[1] != 1 {
			t.Errorf("the shared parent changed")
		}
	})
}

// TestStorageGrowsWithChanges grows a room from nothing to 10 000 members, one join at a time,
// and checks that the bytes stored per state change stay flat rather than growing with the room.
func TestStorageGrowsWithChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10 000-member room")
	}
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		migrated(t, db)
		size := `SELECT COALESCE(SUM(length(entries)), 0) FROM room_state_snapshots`
		if db.Engine() == storage.EnginePostgres {
			size = `SELECT COALESCE(SUM(octet_length(entries)), 0) FROM room_state_snapshots`
		}
		bytes := func() int64 {
			var n int64
			if err := db.QueryRow(context.Background(), size).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		perChange := map[int]float64{}
		var snap, startBytes int64
		const batch = 100
		for members := 0; members < 10_000; members += batch {
			startBytes = bytes()
			err := db.WithTx(context.Background(), func(tx *storage.Tx) error {
				for i := members + 1; i <= members+batch; i++ {
					var err error
					// A join (a new key) and a message-like no-op: only the join is stored.
					if snap, err = AddSnapshot(context.Background(), tx, 1, snap, []Entry{{int64(i), int64(i)}}); err != nil {
						return err
					}
					if _, err = AddSnapshot(context.Background(), tx, 1, snap, nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			perChange[members+batch] = float64(bytes()-startBytes) / batch
		}
		// Average over windows, since full snapshots come in bursts.
		window := func(from, to int) float64 {
			var sum float64
			n := 0
			for m := from + batch; m <= to; m += batch {
				sum += perChange[m]
				n++
			}
			return sum / float64(n)
		}
		small, large := window(100, 1000), window(9000, 10_000)
		t.Logf("bytes per state change: %.1f at 100-1000 members, %.1f at 9000-10000 members", small, large)
		if large > 1.6*small {
			t.Errorf("bytes per change grew with the room: %.1f → %.1f", small, large)
		}
		if got := load(t, db, snap); len(got) != 10_000 {
			t.Errorf("final state has %d entries", len(got))
		}
	})
}

func TestEntriesEncoding(t *testing.T) {
	in := normalise([]Entry{{5, 1}, {1, 9}, {5, 2}, {1 << 40, 1 << 50}, {3, 0}})
	out, err := decodeEntries(encodeEntries(in))
	if err != nil || len(out) != 4 || out[0] != (Entry{1, 9}) || out[2] != (Entry{5, 2}) || out[3] != (Entry{1 << 40, 1 << 50}) {
		t.Fatalf("round trip: %v %v", out, err)
	}
	for _, bad := range [][]byte{{0x80}, {0x01}, {0x01, 0x80}} {
		if _, err := decodeEntries(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(encodeEntries([]Entry{{1, 2}, {3, 4}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodeEntries(b)
		if err != nil {
			return
		}
		again, err := decodeEntries(encodeEntries(entries))
		if err != nil || len(again) != len(entries) {
			t.Fatalf("re-encoding changed %v", entries)
		}
	})
}

// BenchmarkLoadOldState reads the state at an old point of a 10 000-member room on SQLite:
// the target is 10 ms.
func BenchmarkLoadOldState(b *testing.B) {
	db, err := storage.Open(context.Background(), storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	migrated(b, db)
	var snap, old int64
	err = db.WithTx(context.Background(), func(tx *storage.Tx) error {
		for i := int64(1); i <= 10_000; i++ {
			if snap, err = AddSnapshot(context.Background(), tx, 1, snap, []Entry{{i, i}}); err != nil {
				return err
			}
			if i == 9_990 {
				old = snap // just before the next full snapshot would be the worst case; any old one will do
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// The worst case is the longest delta chain: find the snapshot with the most since_base.
	if err := db.QueryRow(context.Background(), `SELECT snapshot_nid FROM room_state_snapshots ORDER BY since_base DESC, snapshot_nid LIMIT 1`).Scan(&old); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := LoadState(context.Background(), db, old)
		if err != nil || len(s) < 9_000 {
			b.Fatalf("%d entries, %v", len(s), err)
		}
	}
}
