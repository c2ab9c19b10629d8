// Package ratelimit holds token buckets keyed by client (an IP address, a user ID) that slow
// down abusive callers of expensive or sensitive endpoints.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// maxKeys bounds the memory of one Limiter; past it, buckets that have refilled (and so carry no
// information) are dropped.
const maxKeys = 100_000

// Limiter is a set of token buckets with one rate, one per key.
type Limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	buckets map[string]*bucket
	now     func() time.Time
	off     bool
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter refilling perSecond tokens per second up to burst. A disabled limiter
// allows everything.
func New(perSecond float64, burst int, enabled bool) *Limiter {
	return &Limiter{rate: perSecond, burst: float64(burst), buckets: map[string]*bucket{}, now: time.Now, off: !enabled}
}

// Allow takes a token from key's bucket. When the bucket is empty it takes nothing and says how
// long until the next token.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil || l.off {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxKeys {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that are full again; they behave exactly like absent ones.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
