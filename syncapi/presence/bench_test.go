package presence

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/presencestore"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

// benchEnv is a tracker with alice in one room with members online users, each with a row.
func benchEnv(b *testing.B, members int) (*env, *Tracker, []id.UserID) {
	db, err := storage.Open(context.Background(), storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	e := newEnv(b, db)
	users := make([]id.UserID, members)
	for i := range users {
		users[i] = id.UserID(fmt.Sprintf("@u%d:%s", i, server))
	}
	e.room(users...)
	tr, err := New(context.Background(), Options{DB: db, Rooms: e.rooms, Users: e.users, Notifier: e.nf, ServerName: server, Enabled: true, Now: e.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tr.Close)
	for _, u := range users {
		if err := tr.SetFromSync(context.Background(), u, Online); err != nil {
			b.Fatal(err)
		}
	}
	return e, tr, users
}

// BenchmarkSetFromSyncOnline is what every /sync of an online user costs presence.
func BenchmarkSetFromSyncOnline(b *testing.B) {
	_, tr, users := benchEnv(b, 1)
	ctx := context.Background()
	for b.Loop() {
		if err := tr.SetFromSync(ctx, users[0], Online); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollectIncremental is an incremental sync of a member of a 1000-member room while
// 100 of them changed presence.
func BenchmarkCollectIncremental(b *testing.B) {
	e, tr, users := benchEnv(b, 1000)
	ctx := context.Background()
	from := pos(b, tr)
	for _, u := range users[:100] {
		if err := tr.set(ctx, u, Unavailable, nil); err != nil {
			b.Fatal(err)
		}
	}
	to := pos(b, tr)
	joined, _ := e.rooms.RoomsOf(ctx, alice, "join")
	req := &synctypes.Request{User: alice, Joined: joined}
	for b.Loop() {
		resp := synctypes.NewResponse()
		if err := tr.Collect(ctx, req, from, to, resp); err != nil || len(resp.Presence.Events) != 100 {
			b.Fatalf("%v, %d events", err, len(resp.Presence.Events))
		}
	}
}

// BenchmarkCollectInitial is an initial sync of a member of a 1000-member room, all online.
func BenchmarkCollectInitial(b *testing.B) {
	e, tr, _ := benchEnv(b, 1000)
	ctx := context.Background()
	joined, _ := e.rooms.RoomsOf(ctx, alice, "join")
	req := &synctypes.Request{User: alice, Joined: joined, Initial: true}
	for b.Loop() {
		resp := synctypes.NewResponse()
		if err := tr.Collect(ctx, req, 0, 0, resp); err != nil || len(resp.Presence.Events) != 1000 {
			b.Fatalf("%v, %d events", err, len(resp.Presence.Events))
		}
	}
}

// BenchmarkSweep is one round of the sweep over 10 000 users online in memory, none due.
func BenchmarkSweep(b *testing.B) {
	db, err := storage.Open(context.Background(), storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := presencestore.Open(context.Background(), db)
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, db)
	rows := make([]presencestore.Presence, 10_000)
	for i := range rows {
		rows[i] = presencestore.Presence{UserID: fmt.Sprintf("@u%d:%s", i, server), State: Online, SetBy: bySync, LastActiveTS: e.clock.Now().UnixMilli()}
	}
	if err := s.Write(context.Background(), rows); err != nil {
		b.Fatal(err)
	}
	tr, err := New(context.Background(), Options{DB: db, Rooms: e.rooms, Users: e.users, ServerName: server, Enabled: true, Now: e.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	for b.Loop() {
		if err := tr.sweep(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
