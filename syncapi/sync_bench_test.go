package syncapi

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// BenchmarkSync500Rooms syncs a user who is in 500 rooms of 20 members and 30 messages each, on
// SQLite: "initial" with the default filter of the issue (timeline limit 20, lazy-loaded
// members), target under 2 s; "incremental" after one room changed, target under 20 ms.
func BenchmarkSync500Rooms(b *testing.B) {
	ctx := context.Background()
	a, rs := pushBenchAPI(b, true) // with unread counts: every room holds 30 notifications for alice
	alice := id.UserID("@alice:example.test")
	var rooms []id.RoomID
	for r := range 500 {
		room, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Preset: roomserver.PresetPublicChat})
		if err != nil {
			b.Fatal(err)
		}
		rooms = append(rooms, room)
		for m := range 19 {
			u := id.UserID(fmt.Sprintf("@u%d:example.test", m))
			sk := string(u)
			if _, err := rs.Send(ctx, room, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: u, Content: json.RawMessage(`{"membership":"join"}`)}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range 30 {
			content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprint("message ", r, " ", i)})
			if _, err := rs.Send(ctx, room, roomserver.Template{Type: "m.room.message", Sender: id.UserID(fmt.Sprintf("@u%d:example.test", i%19)), Content: content}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := a.catchUp(ctx); err != nil {
		b.Fatal(err)
	}
	dev := &userapi.Device{UserID: alice, DeviceID: "DEVICE"}
	limit := 20
	filter := &synctypes.Filter{Room: &synctypes.RoomFilter{Timeline: &synctypes.RoomEventFilter{EventFilter: synctypes.EventFilter{Limit: &limit}},
		State: &synctypes.RoomEventFilter{LazyLoadMembers: true}}}
	b.Run("initial", func(b *testing.B) {
		for b.Loop() {
			now, err := a.positions(ctx)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := a.build(ctx, dev, &syncParams{filter: filter}, now)
			if err != nil || len(resp.Rooms.Join) != 500 {
				b.Fatalf("initial sync: %d rooms, %v", len(resp.Rooms.Join), err)
			}
		}
	})
	b.Run("incremental", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			since, err := a.positions(ctx)
			if err != nil {
				b.Fatal(err)
			}
			content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprint("new ", i)})
			if _, err := rs.Send(ctx, rooms[i%len(rooms)], roomserver.Template{Type: "m.room.message", Sender: alice, Content: content}); err != nil {
				b.Fatal(err)
			}
			if _, err := a.catchUp(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			now, err := a.positions(ctx)
			if err != nil {
				b.Fatal(err)
			}
			s := since
			resp, err := a.build(ctx, dev, &syncParams{since: &s, filter: filter}, now)
			if err != nil || len(resp.Rooms.Join) != 1 {
				b.Fatalf("incremental sync: %d rooms, %v", len(resp.Rooms.Join), err)
			}
		}
	})
}
