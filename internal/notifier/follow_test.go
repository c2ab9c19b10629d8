package notifier

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestFollow: a follower catches up, sleeps, wakes on a notification, retries a failed step,
// and stops when its context ends.
func TestFollow(t *testing.T) {
	n := New()
	defer n.Close()
	var pos, target atomic.Int64
	var fail atomic.Bool
	var calls atomic.Int64
	step := func(context.Context) (int64, bool, error) {
		calls.Add(1)
		if fail.CompareAndSwap(true, false) {
			return 0, false, errors.New("transient")
		}
		if pos.Load() < target.Load() {
			pos.Add(1)
		}
		return pos.Load(), pos.Load() < target.Load(), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Follow(ctx, slog.New(slog.DiscardHandler), "s", "k", step)
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	target.Store(3)
	n.Notify("s", 3, "k")
	waitUntil("catching up to 3", func() bool { return pos.Load() == 3 })
	fail.Store(true)
	target.Store(5)
	n.Notify("s", 5, "k")
	waitUntil("catching up to 5 after a failure", func() bool { return pos.Load() == 5 })
	before := calls.Load()
	time.Sleep(20 * time.Millisecond)
	if calls.Load() != before {
		t.Fatal("the follower polls instead of sleeping")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not stop")
	}
}
