package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// BenchmarkSyncFanout measures, over HTTP on loopback, how long a message sent into a room of
// 100 members takes to reach every member's long-polling /sync (the target: p99 within
// 50 ms, SQLite). Each iteration sends one message and waits for all 100 responses.
func BenchmarkSyncFanout(b *testing.B) {
	s := Start(b)
	ctx := context.Background()
	sender := s.NewUser(b, "sender")
	room := func() id.RoomID {
		resp, err := sender.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			b.Fatal(err)
		}
		return resp.RoomID
	}()
	members := make([]*mautrix.Client, 100)
	since := make([]string, 100)
	for i := range members {
		members[i] = s.NewUser(b, fmt.Sprintf("member%d", i))
		if _, err := members[i].JoinRoomByID(ctx, room); err != nil {
			b.Fatal(err)
		}
	}
	for i, m := range members {
		resp, err := m.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			b.Fatal(err)
		}
		since[i] = resp.NextBatch
	}
	var latencies []time.Duration
	for i := 0; b.Loop(); i++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		arrived := make([]time.Time, len(members))
		ready := make(chan struct{}, len(members))
		for j, m := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ready <- struct{}{}
				for {
					resp, err := m.SyncRequest(ctx, 30_000, since[j], "", false, "")
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					since[j] = resp.NextBatch
					mu.Unlock()
					if jr := resp.Rooms.Join[room]; jr != nil && len(jr.Timeline.Events) > 0 {
						arrived[j] = time.Now()
						return
					}
				}
			}()
		}
		for range members {
			<-ready
		}
		time.Sleep(20 * time.Millisecond) // let the long-polls reach their wait
		sent := time.Now()
		if _, err := sender.SendText(ctx, room, fmt.Sprint("fan-out ", i)); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		for _, at := range arrived {
			latencies = append(latencies, at.Sub(sent))
		}
	}
	slices.Sort(latencies)
	q := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}
