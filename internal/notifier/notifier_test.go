package notifier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// waiters returns how many distinct Wait calls are registered, and how many of them are woken.
func (n *Notifier) waiters() (registered, woken int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := make(map[*waiter]bool)
	for _, e := range n.keys {
		for l := e.first; l != nil; l = l.next {
			seen[l.w] = true
		}
	}
	for w := range seen {
		if w.woken {
			woken++
		}
	}
	return len(seen), woken
}

// checkDrained fails unless no waiter record is left and no key is kept
// without a position to remember.
func checkDrained(t *testing.T, n *Notifier) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, e := range n.keys {
		if e.first != nil {
			t.Errorf("key %q still holds waiters", key)
		}
		if e.pos == nil {
			t.Errorf("key %q kept with nothing in it", key)
		}
	}
}

// waitAsync runs Wait in a goroutine and returns the channel of its result.
func waitAsync(ctx context.Context, n *Notifier, since map[string]int64, keys ...string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- n.Wait(ctx, since, keys...) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return")
		return nil
	}
}

func TestWakeOnMatchingKeyAndStream(t *testing.T) {
	n := New()
	defer n.Close()
	done := waitAsync(context.Background(), n, map[string]int64{"events": 4, "typing": 10}, "room:!a:x", "user:@u:x")
	waitFor(t, "waiter", func() bool { r, _ := n.waiters(); return r == 1 })

	n.Notify("typing", 11, "user:@u:x")
	if err := result(t, done); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	checkDrained(t, n)
}

func TestNoWakeOnOtherKeyStreamOrOldPosition(t *testing.T) {
	n := New()
	defer n.Close()
	done := waitAsync(context.Background(), n, map[string]int64{"events": 4}, "room:!a:x")
	waitFor(t, "waiter", func() bool { r, _ := n.waiters(); return r == 1 })

	// Notify wakes synchronously, so after each call returns the waiter is
	// either already marked woken or will not be.
	for _, tt := range []struct {
		stream string
		pos    int64
		key    string
	}{
		{"events", 9, "room:!b:x"},   // other key
		{"receipts", 9, "room:!a:x"}, // other stream
		{"events", 4, "room:!a:x"},   // not above since
		{"events", 3, "room:!a:x"},   // below since
	} {
		n.Notify(tt.stream, tt.pos, tt.key)
		if _, woken := n.waiters(); woken != 0 {
			t.Fatalf("woken by %s at %d on %s", tt.stream, tt.pos, tt.key)
		}
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v after %s at %d on %s", err, tt.stream, tt.pos, tt.key)
		default:
		}
	}

	n.Notify("events", 5, "room:!a:x")
	if err := result(t, done); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	checkDrained(t, n)
}

func TestNotifiedBeforeWaitReturnsAtOnce(t *testing.T) {
	n := New()
	defer n.Close()
	n.Notify("events", 5, "room:!a:x", "room:!b:x")
	n.Notify("typing", 2, "room:!a:x")

	// A cancelled context shows that Wait found nothing and would have blocked.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		since map[string]int64
		keys  []string
		want  error
	}{
		{"below", map[string]int64{"events": 4}, []string{"room:!a:x"}, nil},
		{"one of many keys", map[string]int64{"events": 4}, []string{"room:!z:x", "room:!b:x"}, nil},
		{"one of many streams", map[string]int64{"events": 5, "typing": 1}, []string{"room:!a:x"}, nil},
		{"equal", map[string]int64{"events": 5}, []string{"room:!a:x"}, context.Canceled},
		{"other stream", map[string]int64{"receipts": 0}, []string{"room:!a:x"}, context.Canceled},
		{"stream not notified on this key", map[string]int64{"typing": 0}, []string{"room:!b:x"}, context.Canceled},
		{"other key", map[string]int64{"events": 0}, []string{"room:!c:x"}, context.Canceled},
		{"no keys", map[string]int64{"events": 0}, nil, context.Canceled},
		{"no streams", nil, []string{"room:!a:x"}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := n.Wait(cancelled, tt.since, tt.keys...); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Wait = %v, want %v", err, tt.want)
			}
		})
	}
	checkDrained(t, n)
}

func TestManyWaitersAllWoken(t *testing.T) {
	const count = 1000
	n := New()
	defer n.Close()
	var wg sync.WaitGroup
	errs := make(chan error, count)
	for i := range count {
		wg.Go(func() {
			// Each waiter also waits on keys of its own, like a user in several rooms.
			errs <- n.Wait(context.Background(), map[string]int64{"events": 0},
				fmt.Sprintf("user:@u%d:x", i), "room:!big:x", fmt.Sprintf("room:!r%d:x", i%10))
		})
	}
	waitFor(t, "all waiters", func() bool { r, _ := n.waiters(); return r == count })

	n.Notify("events", 1, "room:!big:x")
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	}
	checkDrained(t, n)
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.keys) != 1 { // only the notified key keeps a position
		t.Errorf("%d keys left, want 1", len(n.keys))
	}
}

func TestWakeOnlyWaitersOfTheKey(t *testing.T) {
	n := New()
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := waitAsync(ctx, n, map[string]int64{"events": 0}, "room:!a:x")
	b := waitAsync(ctx, n, map[string]int64{"events": 0}, "room:!b:x")
	waitFor(t, "waiters", func() bool { r, _ := n.waiters(); return r == 2 })

	n.Notify("events", 1, "room:!a:x")
	if err := result(t, a); err != nil {
		t.Fatal(err)
	}
	if r, woken := n.waiters(); r != 1 || woken != 0 {
		t.Fatalf("%d waiters, %d woken; want the other one still waiting", r, woken)
	}
	cancel()
	if err := result(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want Canceled", err)
	}
	checkDrained(t, n)
}

func TestCancel(t *testing.T) {
	n := New()
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprintf("room:!r%d:x", i)
	}
	keys = append(keys, keys[0]) // a key listed twice must not upset removal
	done := waitAsync(ctx, n, map[string]int64{"events": 0}, keys...)
	waitFor(t, "waiter", func() bool { r, _ := n.waiters(); return r == 1 })

	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want Canceled", err)
	}
	n.mu.Lock()
	left := len(n.keys)
	n.mu.Unlock()
	if left != 0 {
		t.Errorf("%d keys left after the only waiter left", left)
	}
}

func TestDeadline(t *testing.T) {
	n := New()
	defer n.Close()
	n.Notify("events", 3, "room:!a:x")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := n.Wait(ctx, map[string]int64{"events": 3}, "room:!a:x", "room:!b:x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
	checkDrained(t, n)
}

func TestClose(t *testing.T) {
	n := New()
	var dones []<-chan error
	for i := range 10 {
		dones = append(dones, waitAsync(context.Background(), n, map[string]int64{"events": 0}, fmt.Sprintf("room:!r%d:x", i%3)))
	}
	waitFor(t, "waiters", func() bool { r, _ := n.waiters(); return r == 10 })

	n.Close()
	for _, done := range dones {
		if err := result(t, done); !errors.Is(err, ErrClosed) {
			t.Errorf("Wait = %v, want ErrClosed", err)
		}
	}
	checkDrained(t, n)

	n.Close() // twice is fine
	if err := n.Wait(context.Background(), map[string]int64{"events": 0}, "room:!r0:x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
	n.Notify("events", 1, "room:!r0:x") // must not panic after Close
}

func TestLatest(t *testing.T) {
	n := New()
	defer n.Close()
	if got := n.Latest("events"); got != 0 {
		t.Errorf("Latest of an unknown stream = %d", got)
	}
	n.Notify("events", 7, "room:!a:x")
	n.Notify("events", 5, "room:!b:x") // out of order: transactions commit in any order
	n.Notify("typing", 2)
	if got := n.Latest("events"); got != 7 {
		t.Errorf("Latest(events) = %d, want 7", got)
	}
	if got := n.Latest("typing"); got != 2 {
		t.Errorf("Latest(typing) = %d, want 2", got)
	}
}

func TestForgetBoundsMemoryWithoutLosingWakeUps(t *testing.T) {
	n := New()
	defer n.Close()
	n.maxKeys, n.forgetAt = 8, 8

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kept := waitAsync(ctx, n, map[string]int64{"events": 1000}, "room:!kept:x")
	waitFor(t, "waiter", func() bool { r, _ := n.waiters(); return r == 1 })

	for i := range 100 {
		n.Notify("events", int64(i+1), fmt.Sprintf("room:!r%d:x", i))
	}
	n.mu.Lock()
	size := len(n.keys)
	n.mu.Unlock()
	if size > 9 {
		t.Errorf("%d keys remembered, want at most 9", size)
	}

	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	// room:!r3:x was notified at 4 and forgotten: a waiter from before that
	// must still return at once (spurious wake-ups are allowed, lost ones not).
	if err := n.Wait(cancelled, map[string]int64{"events": 3}, "room:!r3:x"); err != nil {
		t.Errorf("Wait on a forgotten key below its position = %v, want nil", err)
	}
	// A waiter at or past the latest position sleeps.
	if err := n.Wait(cancelled, map[string]int64{"events": 100}, "room:!r3:x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait at the latest position = %v, want Canceled", err)
	}
	// The waiter registered before the forgetting is still woken.
	n.Notify("events", 1001, "room:!kept:x")
	if err := result(t, kept); err != nil {
		t.Errorf("kept waiter: %v", err)
	}
	checkDrained(t, n)
}

// TestConcurrent runs Notify and Wait from many goroutines (meant for -race)
// and checks that no wake-up is lost: every waiter blocked when the last
// notification arrives must return.
func TestConcurrent(t *testing.T) {
	n := New()
	defer n.Close()
	var (
		stop    atomic.Bool
		pos     atomic.Int64
		wakes   atomic.Int64
		waiters sync.WaitGroup
		writers sync.WaitGroup
	)
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("room:!r%d:x", i)
	}
	streams := []string{"events", "typing", "receipts"}

	for i := range 50 {
		waiters.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			mine := []string{keys[rng.IntN(len(keys))], keys[rng.IntN(len(keys))], keys[i%len(keys)]}
			for {
				// Read positions before checking stop: the final Notify comes
				// after stop is set, so either we see stop or it wakes us.
				since := map[string]int64{}
				for _, s := range streams {
					since[s] = n.Latest(s)
				}
				if stop.Load() {
					return
				}
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(10) == 0 {
					cancel() // some waiters give up at once
				}
				err := n.Wait(ctx, since, mine...)
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("Wait = %v", err)
					return
				}
				wakes.Add(1)
			}
		})
	}
	for i := range 4 {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			for range 2000 {
				n.Notify(streams[rng.IntN(len(streams))], pos.Add(1), keys[rng.IntN(len(keys))], keys[rng.IntN(len(keys))])
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	for _, s := range streams {
		n.Notify(s, pos.Add(1), keys...)
	}
	waiters.Wait()
	if wakes.Load() == 0 {
		t.Error("no waiter ever returned")
	}
	checkDrained(t, n)
}

func TestConcurrentClose(t *testing.T) {
	n := New()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			for {
				err := n.Wait(context.Background(), map[string]int64{"events": n.Latest("events")}, fmt.Sprintf("k%d", i%7))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Wait = %v", err)
					return
				}
			}
		})
	}
	for i := range 500 {
		n.Notify("events", int64(i+1), fmt.Sprintf("k%d", i%7))
	}
	n.Close()
	wg.Wait()
	checkDrained(t, n)
}
