package userapi

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// CustomPushRules is asked, for every new event, which of the room's local members (ten thousand
// in a big room) have rules other than the server defaults, so it answers from memory:
//
//   - the set of users with rows in push_rules or push_rule_defaults is read once, at New, and
//     kept up to date by every change (changePushRules). Users without rows are answered by a hash
//     and a filter bit each, rarely a map lookup; users with rows number in the thousands, and the
//     set holds their IDs only.
//   - the rulesets of those users are cached, at most 2*pushRulesCacheSize of them, and loaded on
//     a miss. A user whose rows turn out not to change anything (a default rule disabled and
//     enabled again) leaves the set when loaded.
//
// Only changes made through this process update the cache. In a split deployment that is fine:
// the user component, the only writer of these tables, runs as one process. Rows changed in the
// database by other means are seen after a restart.

// pushRulesCacheSize is how many rulesets a cache generation holds. A merged ruleset takes a few
// KiB, so the cache stays within some tens of MiB.
const pushRulesCacheSize = 4096

// customFilterBits is the size of the filter in front of the set of users with custom rules:
// 8 KiB, which rules out all but a few percent of other users while those are some thousands.
const customFilterBits = 1 << 16

// pushRulesCache holds who has custom push rules, and their rulesets.
//
// A lookup that missed loads from the database and then fills; if the user's rules changed in
// between, the load may be stale. The epoch prevents storing it: fill only stores when no change
// happened since the caller read the epoch, before its query.
//
// Lock order: mu is a leaf lock; nothing is called while holding it.
type pushRulesCache struct {
	mu     sync.RWMutex
	custom map[id.UserID]struct{} // users whose rows may make their rules differ from the defaults
	// filter has the bit of the hash of every user in custom: hashing costs about half a map
	// lookup, and rules out most of a room's members.
	filter []uint64
	seed   maphash.Seed
	// Two generations of loaded rulesets: when cur is full it becomes old, and a hit in old moves
	// back to cur, so the rulesets in use stay and the others go.
	cur, old map[id.UserID]*PushRuleset
	size     int
	epoch    uint64 // incremented by every change
}

// loadPushRulesCache reads the users with push rule rows, in one query over both tables.
func loadPushRulesCache(ctx context.Context, q storage.Querier, size int) (*pushRulesCache, error) {
	rows, err := q.Query(ctx, `SELECT user_id FROM push_rules UNION SELECT user_id FROM push_rule_defaults`)
	if err != nil {
		return nil, fmt.Errorf("users with push rules: %w", err)
	}
	defer rows.Close()
	c := newPushRulesCache(size)
	for rows.Next() {
		var user id.UserID
		if err := rows.Scan(&user); err != nil {
			return nil, fmt.Errorf("users with push rules: %w", err)
		}
		c.mark(user)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("users with push rules: %w", err)
	}
	return c, nil
}

func newPushRulesCache(size int) *pushRulesCache {
	return &pushRulesCache{custom: map[id.UserID]struct{}{}, cur: map[id.UserID]*PushRuleset{}, size: size,
		filter: make([]uint64, customFilterBits/64), seed: maphash.MakeSeed()}
}

// bit returns the filter word and bit of user.
func (c *pushRulesCache) bit(user id.UserID) (int, uint64) {
	h := maphash.String(c.seed, string(user))
	return int(h>>6) & (len(c.filter) - 1), 1 << (h & 63)
}

// mark adds user to those with custom rules.
func (c *pushRulesCache) mark(user id.UserID) {
	c.custom[user] = struct{}{}
	w, b := c.bit(user)
	c.filter[w] |= b
}

// unmark removes user from those with custom rules, and their bit unless another user has it.
func (c *pushRulesCache) unmark(user id.UserID) {
	delete(c.custom, user)
	clear(c.filter)
	for other := range c.custom {
		w, b := c.bit(other)
		c.filter[w] |= b
	}
}

// lookup returns the cached rulesets of those of users who have custom rules, the users among
// them whose rulesets must be loaded, and the epoch to fill them with.
func (c *pushRulesCache) lookup(users []id.UserID) (found map[id.UserID]*PushRuleset, misses []id.UserID, epoch uint64) {
	found = map[id.UserID]*PushRuleset{}
	var promote []id.UserID
	c.mu.RLock()
	epoch = c.epoch
	if len(c.custom) > 0 {
		for _, user := range users {
			if w, b := c.bit(user); c.filter[w]&b == 0 {
				continue
			}
			if _, ok := c.custom[user]; !ok {
				continue
			}
			if rs, ok := c.cur[user]; ok {
				found[user] = rs
			} else if rs, ok := c.old[user]; ok {
				found[user] = rs
				promote = append(promote, user)
			} else {
				misses = append(misses, user)
			}
		}
	}
	c.mu.RUnlock()
	if len(promote) > 0 {
		c.mu.Lock()
		for _, user := range promote {
			if rs, ok := c.old[user]; ok {
				delete(c.old, user)
				c.put(user, rs)
			}
		}
		c.mu.Unlock()
	}
	return found, misses, epoch
}

// fill stores what loading user's rules found, unless they changed since epoch was read.
func (c *pushRulesCache) fill(user id.UserID, rs *PushRuleset, custom bool, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if !custom {
		c.unmark(user)
		return
	}
	c.put(user, rs)
}

// put stores a ruleset in the current generation, starting a new one when it is full.
func (c *pushRulesCache) put(user id.UserID, rs *PushRuleset) {
	if len(c.cur) >= c.size {
		c.old, c.cur = c.cur, make(map[id.UserID]*PushRuleset, c.size)
	}
	c.cur[user] = rs
}

// changed drops the user's cached ruleset and marks them as possibly customised, so that the
// next lookup loads what the tables now hold. Call it after the change has committed.
func (c *pushRulesCache) changed(user id.UserID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	delete(c.cur, user)
	delete(c.old, user)
	c.mark(user)
}

// len is the number of cached rulesets and of users marked as customised, for tests.
func (c *pushRulesCache) len() (rulesets, custom int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.old), len(c.custom)
}

// CustomPushRules returns the rulesets of those of users whose rules differ from the server
// defaults: who have rules of their own, or changed a default rule's enabled state or actions.
// Other users, remote ones included, are left out. It answers from memory but for the first
// lookup of a user since start or since their last change. The rulesets are shared: callers must
// not modify them.
func (u *Users) CustomPushRules(ctx context.Context, users []id.UserID) (map[id.UserID]*PushRuleset, error) {
	out, misses, epoch := u.pushRules.lookup(users)
	loaded := make(map[id.UserID]bool, len(misses))
	for _, user := range misses {
		if loaded[user] {
			continue // listed twice
		}
		loaded[user] = true
		st, err := loadPushRules(ctx, u.db, user)
		if err != nil {
			return nil, fmt.Errorf("userapi: push rules of %s: %w", user, err)
		}
		rs, custom := customRuleset(st, user)
		u.pushRules.fill(user, rs, custom, epoch)
		if custom {
			out[user] = rs
		}
	}
	return out, nil
}

// customRuleset returns the user's ruleset, and whether it differs from the server defaults.
func customRuleset(st *pushRuleState, user id.UserID) (*PushRuleset, bool) {
	for _, rules := range st.user {
		if len(rules) > 0 {
			rs := st.ruleset(user)
			return &rs, true
		}
	}
	defaults := DefaultPushRules(user)
	for k, c := range st.defaults {
		d := defaults.Rule(k.kind, k.id)
		if d == nil {
			continue // a rule the server no longer has: the ruleset ignores the change too
		}
		if c.enabled != nil && *c.enabled != d.Enabled || c.actions != nil && !sameActions(c.actions, d.Actions) {
			rs := st.ruleset(user)
			return &rs, true
		}
	}
	return nil, false
}

// sameActions compares two lists of actions as stored (tweak values as compact JSON).
func sameActions(a, b []PushAction) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Action != b[i].Action || a[i].Tweak != b[i].Tweak || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
