package ephemeral

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

func benchRooms(n int) []id.RoomID {
	rooms := make([]id.RoomID, n)
	for i := range rooms {
		rooms[i] = id.RoomID(fmt.Sprintf("!room%d:example.test", i))
	}
	return rooms
}

// BenchmarkTypingCollect is the typing part of an incremental /sync of a user in 500 rooms,
// when one of them changed and 1000 other rooms of the server changed in the same window.
func BenchmarkTypingCollect(b *testing.B) {
	ty := newTyping(nil, time.Now)
	defer ty.close()
	rooms := benchRooms(1500)
	from := ty.pos.Load()
	for _, r := range rooms[500:] {
		ty.Set(r, "@alice:example.test", true, time.Hour)
	}
	ty.Set(rooms[7], "@alice:example.test", true, time.Hour)
	to := ty.pos.Load()
	req := &synctypes.Request{User: "@bob:example.test", Joined: rooms[:500]}
	for b.Loop() {
		resp := synctypes.NewResponse()
		if err := ty.Collect(context.Background(), req, from, to, resp); err != nil {
			b.Fatal(err)
		}
		if len(resp.Rooms.Join) != 1 {
			b.Fatalf("%d rooms", len(resp.Rooms.Join))
		}
	}
}

// BenchmarkReceiptsCollect is the receipts part of an incremental /sync of a user in 500 rooms
// on SQLite, when one of them got a receipt and 1000 other rooms did too: one query, for the one
// room.
func BenchmarkReceiptsCollect(b *testing.B) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	nf := notifier.New()
	defer nf.Close()
	rc, err := newReceipts(ctx, db, nf, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	rooms := benchRooms(1500)
	put := func(room id.RoomID) {
		if err := rc.Put(ctx, []receiptstore.Receipt{{RoomID: string(room), UserID: "@alice:example.test", Type: "m.read", EventID: "$e", TS: 1}}); err != nil {
			b.Fatal(err)
		}
	}
	from := rc.pos.Load()
	for _, r := range rooms[500:] {
		put(r)
	}
	put(rooms[7])
	to := rc.pos.Load()
	req := &synctypes.Request{User: "@bob:example.test", Joined: rooms[:500]}
	for b.Loop() {
		resp := synctypes.NewResponse()
		if err := rc.Collect(ctx, req, from, to, resp); err != nil {
			b.Fatal(err)
		}
		if len(resp.Rooms.Join) != 1 {
			b.Fatalf("%d rooms", len(resp.Rooms.Join))
		}
	}
}

// BenchmarkReceiptPut is one receipt written on SQLite, position and wake-up included.
func BenchmarkReceiptPut(b *testing.B) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	nf := notifier.New()
	defer nf.Close()
	rc, err := newReceipts(ctx, db, nf, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		err := rc.Put(ctx, []receiptstore.Receipt{{RoomID: "!room:example.test", UserID: "@alice:example.test", Type: "m.read",
			EventID: fmt.Sprintf("$e%d", i), EventPos: int64(i), TS: 1}})
		if err != nil {
			b.Fatal(err)
		}
	}
}
