package userapi

import (
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// TestCacheStats: token checks count as misses until the cache holds the token, then as hits.
func TestCacheStats(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		alice := mustAccount(t, u, "alice", "").UserID
		_, toks := mustLogin(t, u, NewDevice{UserID: alice})
		before := u.CacheStats()
		for range 3 {
			if _, err := u.QueryAccessToken(t.Context(), toks.AccessToken); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := u.QueryAccessToken(t.Context(), "unknown"); err == nil {
			t.Fatal("unknown token accepted")
		}
		got := u.CacheStats()
		if got.Tokens != 1 || got.MaxTokens != defaultCacheSize || got.Hits-before.Hits != 2 || got.Misses-before.Misses != 2 {
			t.Errorf("stats %+v after %+v, want 1 token, 2 more hits and 2 more misses", got, before)
		}
	})
}

// TestCacheStatsEvictions: entries dropped to make room are counted.
func TestCacheStatsEvictions(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTokenCache(8)
	for i := range 20 {
		c.put(hashToken(string(rune('a'+i))), Device{UserID: id.UserID("@u:x")}, time.Time{}, c.currentEpoch(), now)
	}
	if st := c.stats(); st.Tokens != c.len() || st.Evictions != int64(20-st.Tokens) {
		t.Errorf("stats %+v: every put beyond the %d entries held must count as an eviction", st, st.Tokens)
	}
}
