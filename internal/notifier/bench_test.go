package notifier

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkNotifyNoWaiters is the cost added to every committed write when nobody listens.
func BenchmarkNotifyNoWaiters(b *testing.B) {
	n := New()
	defer n.Close()
	keys := roomKeys(1000)
	var pos int64
	for i := 0; b.Loop(); i++ {
		pos++
		n.Notify("events", pos, keys[i%len(keys)])
	}
}

// BenchmarkNotifyIdleWaiters shows that waiters on other keys cost Notify nothing:
// 10000 long-polls wait on rooms that are not notified.
func BenchmarkNotifyIdleWaiters(b *testing.B) {
	n := New()
	ctx, cancel := context.WithCancel(context.Background())
	idle := roomKeys(10000)
	done := make(chan struct{}, len(idle))
	for _, k := range idle {
		go func() {
			_ = n.Wait(ctx, map[string]int64{"events": 1 << 62}, k)
			done <- struct{}{}
		}()
	}
	waitFor(b, "idle waiters", func() bool { r, _ := n.waiters(); return r == len(idle) })
	keys := roomKeys(1000)
	for i := range keys {
		keys[i] = "busy:" + keys[i]
	}

	b.ResetTimer()
	var pos int64
	for i := 0; b.Loop(); i++ {
		pos++
		n.Notify("events", pos, keys[i%len(keys)])
	}
	b.StopTimer()
	cancel()
	for range idle {
		<-done
	}
	n.Close()
}

// BenchmarkWaitWake is one long-poll woken per Notify, round trip included.
func BenchmarkWaitWake(b *testing.B) {
	benchmarkWaitWake(b, 1)
}

// BenchmarkWaitWakeManyKeys is a user in 500 rooms woken by a message in one of them.
func BenchmarkWaitWakeManyKeys(b *testing.B) {
	benchmarkWaitWake(b, 500)
}

func benchmarkWaitWake(b *testing.B, rooms int) {
	n := New()
	defer n.Close()
	keys := append(roomKeys(rooms), "user:@alice:x")
	woke := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(woke)
		for pos := int64(0); ; pos++ {
			if err := n.Wait(context.Background(), map[string]int64{"events": pos}, keys...); err != nil {
				return
			}
			select {
			case woke <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	var pos int64
	for b.Loop() {
		pos++
		n.Notify("events", pos, keys[int(pos)%rooms])
		<-woke
	}
	close(stop)
	n.Close()
	for range woke {
	}
}

func roomKeys(count int) []string {
	keys := make([]string, count)
	for i := range keys {
		keys[i] = fmt.Sprintf("room:!room%d:example.org", i)
	}
	return keys
}
