package search

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

const benchMessages = 10_000

// benchRoom fills a room on SQLite with benchMessages messages of ten words each from a
// vocabulary of 1 000 (so a word is in about 1% of them), every one also saying "hello".
func benchRoom(b *testing.B) (*env, id.RoomID) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	e := newEnv(b, db)
	roomID, err := e.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice})
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range benchMessages {
		words := []string{"hello"}
		for range 10 {
			words = append(words, fmt.Sprintf("word%04d", rnd.IntN(1000)))
		}
		e.send(b, roomID, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": strings.Join(words, " ")})
	}
	return e, roomID
}

// BenchmarkIndex indexes a room's 10 000 messages from the output stream into an empty search
// store, as the consumer does after a restart with an empty index.
func BenchmarkIndex(b *testing.B) {
	e, _ := benchRoom(b)
	ctx := context.Background()
	var events int
	for b.Loop() {
		b.StopTimer()
		db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s, err := New(ctx, Options{DB: db, Rooms: e.rooms, ServerName: server})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.indexAll(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		events += int(s.cursor.Load())
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSearch answers searches over the room's 10 000 messages, ten results a page, as a
// member of the room.
func BenchmarkSearch(b *testing.B) {
	e, _ := benchRoom(b)
	ctx := context.Background()
	s := e.search(b)
	if err := s.indexAll(ctx); err != nil {
		b.Fatal(err)
	}
	term := func(s string) *string { return &s }
	for _, c := range []struct {
		name string
		crit roomEventsCriteria
	}{
		{"rare-rank", roomEventsCriteria{SearchTerm: term("word0042")}},
		{"rare-recent", roomEventsCriteria{SearchTerm: term("word0042"), OrderBy: orderRecent}},
		{"two-words-rank", roomEventsCriteria{SearchTerm: term("hello word0042")}},
		{"every-message-rank", roomEventsCriteria{SearchTerm: term("hello")}},
		{"every-message-recent", roomEventsCriteria{SearchTerm: term("hello"), OrderBy: orderRecent}},
		{"prefix-recent-context", roomEventsCriteria{SearchTerm: term("word00"), OrderBy: orderRecent,
			EventContext: &struct {
				BeforeLimit    *int `json:"before_limit"`
				AfterLimit     *int `json:"after_limit"`
				IncludeProfile bool `json:"include_profile"`
			}{IncludeProfile: true}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := parseCriteria(&c.crit, nil)
			if err != nil {
				b.Fatal(err)
			}
			p.q.User = string(alice)
			for b.Loop() {
				res, err := s.roomEvents(ctx, p)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Results) == 0 {
					b.Fatal("no results")
				}
			}
		})
	}
}
