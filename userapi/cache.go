package userapi

import (
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"
)

const (
	// defaultCacheSize bounds the access token cache. An entry is a few hundred bytes, so the
	// cache stays within a few MiB while holding every active session of a mid-sized server.
	defaultCacheSize = 10000
	// cacheMaxAge bounds how long an entry is trusted. Every revocation made through this
	// process drops its entries at once; the bound only limits how long a change made by
	// another process on the same database (the account commands of the CLI) goes unseen.
	cacheMaxAge = time.Minute
)

// tokenCache maps access token hashes to the devices they belong to, so that the token check on
// every request costs a hash and a map lookup instead of a query.
//
// Revocation is per user: every change that revokes tokens or alters what a cached Device says
// (admin flag, display name) drops all entries of that user. Those changes are rare, and a
// per-user sweep cannot miss a token the way a list of revoked hashes could.
//
// A lookup that missed reads the database and then puts its answer; if an invalidation ran in
// between, the answer may describe a token that has just been revoked. The epoch prevents that:
// put only stores when no invalidation happened since the caller read the epoch (before its query).
//
// Lock order: mu is a leaf lock; nothing is called while holding it.
type tokenCache struct {
	mu      sync.RWMutex
	max     int
	epoch   uint64 // incremented by every invalidation
	entries map[tokenHash]*cacheEntry
	byUser  map[id.UserID]map[tokenHash]struct{}

	hits, misses, evictions atomic.Int64
}

type cacheEntry struct {
	dev     Device
	expires time.Time // the token's expiry or the entry's maximum age, whichever is earlier
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{
		max:     max,
		entries: make(map[tokenHash]*cacheEntry),
		byUser:  make(map[id.UserID]map[tokenHash]struct{}),
	}
}

// get returns a copy of the cached device of h, if there is a live entry.
func (c *tokenCache) get(h tokenHash, now time.Time) (*Device, bool) {
	c.mu.RLock()
	e, ok := c.entries[h]
	if !ok || !now.Before(e.expires) {
		c.mu.RUnlock()
		c.misses.Add(1)
		return nil, false // an expired entry is left for put's sweep; the query answers
	}
	d := e.dev
	c.mu.RUnlock()
	c.hits.Add(1)
	return &d, true
}

// currentEpoch is read before a query whose answer will be put.
func (c *tokenCache) currentEpoch() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// put caches dev for h until expires, unless an invalidation ran since epoch was read.
func (c *tokenCache) put(h tokenHash, dev Device, expires time.Time, epoch uint64, now time.Time) {
	if maxExp := now.Add(cacheMaxAge); expires.IsZero() || expires.After(maxExp) {
		expires = maxExp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if old, ok := c.entries[h]; ok {
		c.remove(h, old)
	} else if len(c.entries) >= c.max {
		c.makeRoom(now)
	}
	c.entries[h] = &cacheEntry{dev: dev, expires: expires}
	set := c.byUser[dev.UserID]
	if set == nil {
		set = make(map[tokenHash]struct{})
		c.byUser[dev.UserID] = set
	}
	set[h] = struct{}{}
}

// makeRoom drops expired entries and, if that is not enough, arbitrary ones (map iteration order
// is random) down to 7/8 of the bound, so that a full cache does not sweep on every put.
func (c *tokenCache) makeRoom(now time.Time) {
	before := len(c.entries)
	for h, e := range c.entries {
		if !now.Before(e.expires) {
			c.remove(h, e)
		}
	}
	for h, e := range c.entries {
		if len(c.entries) <= c.max*7/8 {
			break
		}
		c.remove(h, e)
	}
	c.evictions.Add(int64(before - len(c.entries)))
}

func (c *tokenCache) remove(h tokenHash, e *cacheEntry) {
	delete(c.entries, h)
	if set := c.byUser[e.dev.UserID]; set != nil {
		delete(set, h)
		if len(set) == 0 {
			delete(c.byUser, e.dev.UserID)
		}
	}
}

// invalidateUser drops every entry of userID. Call it after the change has committed.
func (c *tokenCache) invalidateUser(userID id.UserID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for h := range c.byUser[userID] {
		delete(c.entries, h)
	}
	delete(c.byUser, userID)
}

// touch updates the last-seen fields of the cached devices of one session.
func (c *tokenCache) touch(userID id.UserID, deviceID id.DeviceID, ts int64, ip, ua string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h := range c.byUser[userID] {
		if e := c.entries[h]; e.dev.DeviceID == deviceID {
			e.dev.LastSeenTS, e.dev.LastSeenIP, e.dev.LastSeenUA = ts, ip, ua
		}
	}
}

// len is the number of entries, for tests.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// CacheStats measures the access token cache.
type CacheStats struct {
	Tokens, MaxTokens int // entries held, and their bound
	// Hits and Misses count token checks answered from the cache or not; Evictions counts
	// entries dropped to make room, expired ones included.
	Hits, Misses, Evictions int64
}

func (c *tokenCache) stats() CacheStats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return CacheStats{Tokens: len(c.entries), MaxTokens: c.max,
		Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load()}
}

// CacheStats reports how the access token cache is doing, for metrics.
func (u *Users) CacheStats() CacheStats { return u.cache.stats() }
