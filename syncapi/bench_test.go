package syncapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/userapi"
)

// BenchmarkMessagesPage pages backwards through a room of 10 000 messages in pages of 100, as
// /messages does for a member (filter and history visibility applied), on SQLite; the issue's
// target is under 20 ms per page.
func BenchmarkMessagesPage(b *testing.B) {
	ctx := context.Background()
	a, rs := benchAPI(b)
	alice := id.UserID("@alice:example.test")
	roomID, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10_000 {
		content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprint("message ", i)})
		if _, err := rs.Send(ctx, roomID, roomserver.Template{Type: "m.room.message", Sender: alice, Content: content}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := a.catchUp(ctx); err != nil {
		b.Fatal(err)
	}
	v, err := a.viewerOf(ctx, string(roomID), string(alice))
	if err != nil {
		b.Fatal(err)
	}
	f := &roomEventFilter{Types: []string{"m.room.message"}}
	dev := &userapi.Device{UserID: alice, DeviceID: "DEVICE"}
	b.ResetTimer()
	pages := 0
	for b.Loop() {
		from := syncstore.Point{Depth: math.MaxInt64, Pos: math.MaxInt64}
		for {
			evs, next, more, err := a.page(ctx, roomID, v, f, from, nil, true, 100)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.renderAggregated(ctx, evs, dev, v); err != nil {
				b.Fatal(err)
			}
			pages++
			if !more || len(evs) == 0 {
				break
			}
			from = next
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pages)/1e6, "ms/page")
}

// benchAPI starts a roomserver, a user component and the sync component on a fresh SQLite
// database, all closed when the benchmark ends.
func benchAPI(b *testing.B) (*API, *roomserver.Roomserver) {
	b.Helper()
	return pushBenchAPI(b, false)
}
