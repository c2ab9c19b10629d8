package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func nextPos(t *testing.T, db *storage.DB, stream string) int64 {
	t.Helper()
	var pos int64
	err := db.WithTx(t.Context(), func(tx *storage.Tx) error {
		var err error
		pos, err = tx.NextStreamPosition(t.Context(), stream)
		return err
	})
	if err != nil {
		t.Fatalf("NextStreamPosition(%s): %v", stream, err)
	}
	return pos
}

func streamPos(t *testing.T, db *storage.DB, stream string) int64 {
	t.Helper()
	pos, err := db.StreamPosition(t.Context(), stream)
	if err != nil {
		t.Fatalf("StreamPosition(%s): %v", stream, err)
	}
	return pos
}

func TestStreamPositions(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		steps := []struct {
			stream string
			want   int64
		}{{"events", 1}, {"events", 2}, {"typing", 1}, {"events", 3}, {"typing", 2}, {"receipts", 1}}
		for _, s := range steps {
			if got := nextPos(t, db, s.stream); got != s.want {
				t.Errorf("next %s = %d, want %d", s.stream, got, s.want)
			}
		}
		for stream, want := range map[string]int64{"events": 3, "typing": 2, "receipts": 1, "unused": 0} {
			if got := streamPos(t, db, stream); got != want {
				t.Errorf("StreamPosition(%s) = %d, want %d", stream, got, want)
			}
		}

		// Several positions in one transaction; a rolled-back transaction publishes nothing and its
		// numbers are handed out again.
		var got []int64
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			for range 2 {
				pos, err := tx.NextStreamPosition(ctx, "events")
				if err != nil {
					return err
				}
				got = append(got, pos)
			}
			return nil
		})
		if err != nil || fmt.Sprint(got) != "[4 5]" {
			t.Fatalf("two positions in one transaction = %v (%v), want [4 5]", got, err)
		}
		errAbort := errors.New("abort")
		err = db.WithTx(ctx, func(tx *storage.Tx) error {
			if pos, err := tx.NextStreamPosition(ctx, "events"); err != nil || pos != 6 {
				return fmt.Errorf("position %d: %w", pos, err)
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("aborted transaction: %v", err)
		}
		if got := streamPos(t, db, "events"); got != 5 {
			t.Errorf("after rollback StreamPosition = %d, want 5", got)
		}
		if got := nextPos(t, db, "events"); got != 6 {
			t.Errorf("after rollback next = %d, want 6", got)
		}
	})
}

// TestStreamConcurrentWriters has many goroutines append to one stream while a consumer follows
// it. Every position must be used exactly once, and the consumer must never see a position before
// all lower ones are visible: otherwise a cursor would skip a row that commits later.
func TestStreamConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 25
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		createTable(t, db, `CREATE TABLE items (position BIGINT PRIMARY KEY, writer INTEGER NOT NULL)`)

		var done atomic.Bool
		consumerErr := make(chan error, 1)
		go func() { consumerErr <- consume(ctx, db, &done, writers*perWriter) }()

		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				for range perWriter {
					err := db.WithTx(ctx, func(tx *storage.Tx) error {
						// Other work of the transaction comes first, as in real writers.
						if _, err := tx.Exec(ctx, `SELECT COUNT(*) FROM items WHERE writer = $1`, w); err != nil {
							return err
						}
						pos, err := tx.NextStreamPosition(ctx, "items")
						if err != nil {
							return err
						}
						_, err = tx.Exec(ctx, `INSERT INTO items (position, writer) VALUES ($1, $2)`, pos, w)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		done.Store(true)
		close(errs)
		for err := range errs {
			t.Errorf("writer: %v", err)
		}
		if err := <-consumerErr; err != nil {
			t.Error(err)
		}
		var n, lo, hi int64
		if err := db.QueryRow(ctx, `SELECT COUNT(*), MIN(position), MAX(position) FROM items`).Scan(&n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != writers*perWriter || lo != 1 || hi != n {
			t.Errorf("items: %d rows from %d to %d, want 1..%d without gaps", n, lo, hi, writers*perWriter)
		}
		if got := streamPos(t, db, "items"); got != writers*perWriter {
			t.Errorf("StreamPosition = %d, want %d", got, writers*perWriter)
		}
	})
}

// consume follows the items stream like a real consumer until it has seen total rows (or the
// writers are done), checking that each batch continues the previous one without a gap.
func consume(ctx context.Context, db *storage.DB, writersDone *atomic.Bool, total int64) error {
	var cursor int64
	for cursor < total {
		finished := writersDone.Load()
		// First the stream's position, then the rows up to it: all of them must be visible.
		upTo, err := db.StreamPosition(ctx, "items")
		if err != nil {
			return err
		}
		rows, err := db.Query(ctx, `SELECT position FROM items WHERE position > $1 ORDER BY position`, cursor)
		if err != nil {
			return err
		}
		for rows.Next() {
			var pos int64
			if err := rows.Scan(&pos); err != nil {
				rows.Close()
				return err
			}
			if pos != cursor+1 {
				rows.Close()
				return fmt.Errorf("consumer at %d saw position %d first: a lower position was not yet visible", cursor, pos)
			}
			cursor = pos
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if cursor < upTo {
			return fmt.Errorf("stream position was %d but rows were visible only up to %d", upTo, cursor)
		}
		if finished && cursor < total {
			return fmt.Errorf("writers done but consumer saw only %d of %d rows", cursor, total)
		}
	}
	return nil
}

// BenchmarkNextStreamPosition measures allocating a stream position in its own write transaction,
// the fixed cost every sent event pays.
func BenchmarkNextStreamPosition(b *testing.B) {
	for _, engine := range storagetest.Engines() {
		b.Run(string(engine), func(b *testing.B) {
			db, err := storage.Open(b.Context(), storagetest.DSN(b, engine), storage.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := b.Context()
			allocate := func() error {
				return db.WithTx(ctx, func(tx *storage.Tx) error {
					_, err := tx.NextStreamPosition(ctx, "events")
					return err
				})
			}
			b.Run("serial", func(b *testing.B) {
				for b.Loop() {
					if err := allocate(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := allocate(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
