package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(0.5, 2, true)
	l.now = func() time.Time { return now }
	for i := range 2 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 2*time.Second {
		t.Fatalf("third request: ok=%v wait=%v, want refused for 2s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key shares the bucket")
	}
	now = now.Add(time.Second)
	if ok, wait := l.Allow("a"); ok || wait != time.Second {
		t.Fatalf("after 1s: ok=%v wait=%v", ok, wait)
	}
	now = now.Add(time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refill did not happen")
	}
	now = now.Add(time.Hour)
	for range 2 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("bucket did not refill to its burst")
		}
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("bucket refilled beyond its burst")
	}
}

func TestDisabledAndNil(t *testing.T) {
	l := New(0.001, 1, false)
	var nilL *Limiter
	for range 10 {
		if ok, _ := l.Allow("x"); !ok {
			t.Fatal("disabled limiter refused")
		}
		if ok, _ := nilL.Allow("x"); !ok {
			t.Fatal("nil limiter refused")
		}
	}
}

func TestSweepBoundsMemory(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(1, 1, true)
	l.now = func() time.Time { return now }
	for i := range maxKeys {
		l.Allow(fmt.Sprint(i))
	}
	now = now.Add(2 * time.Second) // every bucket is full again
	l.Allow("new")
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after sweep, want 1", len(l.buckets))
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(1e9, 1<<30, true)
	for i := 0; b.Loop(); i++ {
		l.Allow("10.0.0.1")
	}
}
