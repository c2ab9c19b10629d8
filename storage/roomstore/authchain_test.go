package roomstore

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// naiveChain walks the auth graph: the model the index must agree with.
func naiveChain(auth map[int64][]int64, events []int64) []int64 {
	seen := map[int64]struct{}{}
	stack := []int64{}
	for _, e := range events {
		stack = append(stack, auth[e]...)
	}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[x]; ok {
			continue
		}
		seen[x] = struct{}{}
		stack = append(stack, auth[x]...)
	}
	return sortedKeys(seen)
}

func naiveDifference(auth map[int64][]int64, sets [][]int64) []int64 {
	count := map[int64]int{}
	for _, s := range sets {
		for _, x := range naiveChain(auth, s) {
			count[x]++
		}
	}
	var out []int64
	for x, n := range count {
		if n < len(sets) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

func TestAuthChainsMatchAGraphWalk(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		migrated(t, db)
		rng := rand.New(rand.NewPCG(3, 4))
		auth := map[int64][]int64{}
		c := NewChains(200) // small, so eviction and reloads happen
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			for e := int64(1); e <= 300; e++ {
				var as []int64
				for range min(int(e-1), rng.IntN(4)) {
					as = append(as, 1+rng.Int64N(e-1))
				}
				as = dedupe(as)
				auth[e] = as
				if err := c.Add(ctx, tx, 1, e, as); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		fresh := NewChains(1 << 20) // reads everything back from the index
		for _, reader := range []*Chains{c, fresh} {
			for range 50 {
				var set []int64
				for range 1 + rng.IntN(5) {
					set = append(set, 1+rng.Int64N(300))
				}
				got, err := reader.AuthChain(ctx, db, set)
				if err != nil {
					t.Fatal(err)
				}
				if want := naiveChain(auth, set); !slices.Equal(got, want) {
					t.Fatalf("chain of %v: %v, want %v", set, got, want)
				}
			}
			for range 50 {
				var sets [][]int64
				shared := []int64{1 + rng.Int64N(300), 1 + rng.Int64N(300)}
				for range 2 + rng.IntN(3) {
					s := slices.Clone(shared)
					for range rng.IntN(6) {
						s = append(s, 1+rng.Int64N(300))
					}
					sets = append(sets, s)
				}
				got, err := reader.Difference(ctx, db, sets)
				if err != nil {
					t.Fatal(err)
				}
				if want := naiveDifference(auth, sets); !slices.Equal(got, want) {
					t.Fatalf("difference of %v: %v, want %v", sets, got, want)
				}
			}
		}
		if _, err := fresh.AuthChain(ctx, db, []int64{9999}); err == nil {
			t.Error("an event without a stored chain was accepted")
		}
		if d, err := fresh.Difference(ctx, db, [][]int64{{1, 2}}); err != nil || d != nil {
			t.Errorf("difference of one set: %v %v", d, err)
		}
	})
}

// BenchmarkAuthChainDifference compares two forks of a 10 000-member room that differ by 100
// state events, on SQLite with a warm cache (the chains of the current state are hot in a busy
// room). It is the storage part of the 50 ms fork resolution.
func BenchmarkAuthChainDifference(b *testing.B) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	migrated(b, db)
	c := NewChains(4 << 20)
	const members = 10_000
	var base, left, right []int64
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		// create 1, power levels 2, join rules 3, then joins authorised by them.
		if err := c.Add(ctx, tx, 1, 1, nil); err != nil {
			return err
		}
		if err := c.Add(ctx, tx, 1, 2, []int64{1}); err != nil {
			return err
		}
		if err := c.Add(ctx, tx, 1, 3, []int64{1, 2}); err != nil {
			return err
		}
		base = []int64{1, 2, 3}
		next := int64(4)
		for range members {
			if err := c.Add(ctx, tx, 1, next, []int64{1, 2, 3}); err != nil {
				return err
			}
			base = append(base, next)
			next++
		}
		// Each fork changes 50 memberships and adds a power-levels chain of its own.
		fork := func() ([]int64, error) {
			s := slices.Clone(base)
			pl := int64(2)
			for i := range 50 {
				if err := c.Add(ctx, tx, 1, next, []int64{1, pl, base[4+i]}); err != nil {
					return nil, err
				}
				s[4+i] = next
				pl = next
				next++
			}
			return s, nil
		}
		if left, err = fork(); err != nil {
			return err
		}
		right, err = fork()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		d, err := c.Difference(ctx, db, [][]int64{left, right})
		if err != nil || len(d) == 0 {
			b.Fatalf("%d, %v", len(d), err)
		}
	}
}
