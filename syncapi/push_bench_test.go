package syncapi

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/push"
	"github.com/latticehq/lattice/userapi"
)

// pushBenchAPI starts a roomserver, a user component and the sync component on a fresh SQLite
// database, with the push component evaluating in the consumer or without it, all closed when the
// benchmark ends.
func pushBenchAPI(b *testing.B, withPush bool) (*API, *roomserver.Roomserver) {
	b.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	nf := notifier.New()
	b.Cleanup(nf.Close)
	rs, err := roomserver.New(ctx, db, roomserver.Options{ServerName: "example.test", SigningKey: federation.GenerateSigningKey(), Notifier: nf})
	if err != nil {
		b.Fatal(err)
	}
	users, err := userapi.New(ctx, db, userapi.Options{ServerName: "example.test", Notifier: nf})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { users.Close() })
	opts := Options{DB: db, Rooms: rs, Users: users, Notifier: nf}
	if withPush {
		p, err := push.New(ctx, push.Options{DB: db, Rooms: rs, Users: users, Notifier: nf, ServerName: "example.test", Config: config.Default("example.test").Push})
		if err != nil {
			b.Fatal(err)
		}
		opts.Push = p
	}
	a, err := New(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	return a, rs
}

// joinMembers sends n join events of local users into the room.
func joinMembers(b *testing.B, rs *roomserver.Roomserver, room id.RoomID, from, n int) {
	b.Helper()
	for i := from; i < from+n; i++ {
		sk := fmt.Sprintf("@member%d:example.test", i)
		if _, err := rs.Send(context.Background(), room, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: id.UserID(sk),
			Content: json.RawMessage(`{"membership":"join"}`)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPushMessage10k stores a message into a room of 10 000 local members, each notified
// under the default rules, as the sync consumer does: the event, its timeline row and (with
// push) the 10 000 notifications in one transaction. "off" is the same without push.
func BenchmarkPushMessage10k(b *testing.B) {
	for _, withPush := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[withPush]
		b.Run("push="+name, func(b *testing.B) {
			ctx := context.Background()
			a, rs := pushBenchAPI(b, withPush)
			alice := id.UserID("@alice:example.test")
			room, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Preset: roomserver.PresetPublicChat})
			if err != nil {
				b.Fatal(err)
			}
			joinMembers(b, rs, room, 0, 10_000)
			if _, err := a.catchUp(ctx); err != nil {
				b.Fatal(err)
			}
			content := json.RawMessage(`{"msgtype":"m.text","body":"hello everyone"}`)
			for b.Loop() {
				if _, err := rs.Send(ctx, room, roomserver.Template{Type: "m.room.message", Sender: alice, Content: content}); err != nil {
					b.Fatal(err)
				}
				if _, err := a.catchUp(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPushJoinStorm consumes a storm of 1 000 joins into one room (each join evaluated for
// every member already in it): the background work that must end within 5 s of the last join.
func BenchmarkPushJoinStorm(b *testing.B) {
	for _, withPush := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[withPush]
		b.Run("push="+name, func(b *testing.B) {
			ctx := context.Background()
			a, rs := pushBenchAPI(b, withPush)
			alice := id.UserID("@alice:example.test")
			var total time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				room, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Preset: roomserver.PresetPublicChat})
				if err != nil {
					b.Fatal(err)
				}
				joinMembers(b, rs, room, 0, 1000)
				b.StartTimer()
				start := time.Now()
				if _, err := a.catchUp(ctx); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				n++
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/storm")
		})
	}
}
