package roomstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/latticehq/lattice/storage"
)

// The auth-chain index keeps, for every state event, its whole auth chain: the events its
// auth_events name and, recursively, theirs (server-server API, "Auth events selection"; room
// v2 "Auth difference"). A chain is computed once, when its event is stored, from the chains of
// its auth events, so state resolution never walks the room's event graph.
//
// A chain holds the room's power-granting history (create, power levels, join rules and the
// memberships that authorised them), not its members or messages, so it stays small in rooms
// of any size.

// Chains reads and writes the auth-chain index through a bounded cache; chains never change
// once written, so cached ones are never stale.
type Chains struct {
	mu      sync.Mutex
	cache   map[int64][]int64
	size    int // NIDs held in the cache
	maxSize int
}

// NewChains returns an index reader whose cache holds at most maxNIDs event IDs in all.
func NewChains(maxNIDs int) *Chains {
	return &Chains{cache: map[int64][]int64{}, maxSize: maxNIDs}
}

// Size returns how many event numbers the cache holds, for metrics.
func (c *Chains) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Add stores the auth chain of a new state event from the chains of its auth events. It runs in
// the event's writing transaction.
func (c *Chains) Add(ctx context.Context, tx *storage.Tx, roomNID, eventNID int64, authEvents []int64) error {
	parts, err := c.load(ctx, tx, authEvents)
	if err != nil {
		return err
	}
	set := map[int64]struct{}{}
	for _, a := range authEvents {
		set[a] = struct{}{}
		for _, x := range parts[a] {
			set[x] = struct{}{}
		}
	}
	chain := sortedKeys(set)
	if _, err := tx.Exec(ctx, `INSERT INTO room_auth_chains (event_nid, room_nid, chain) VALUES ($1, $2, $3)`,
		eventNID, roomNID, encodeNIDs(chain)); err != nil {
		return fmt.Errorf("store auth chain of %d: %w", eventNID, err)
	}
	c.put(eventNID, chain)
	return nil
}

// AuthChain returns the union of the auth chains of events, sorted.
func (c *Chains) AuthChain(ctx context.Context, q storage.Querier, events []int64) ([]int64, error) {
	parts, err := c.load(ctx, q, events)
	if err != nil {
		return nil, err
	}
	set := map[int64]struct{}{}
	for _, e := range events {
		for _, x := range parts[e] {
			set[x] = struct{}{}
		}
	}
	return sortedKeys(set), nil
}

// Difference returns the events that are in the auth chain of some of the state sets but not of
// all of them (room v2 state resolution, "Auth difference"), sorted.
//
// Events present in every set add the same chain to every set, so they can only put an event in
// the common part. Only the chains of the other events are compared one by one; the shared
// events' chains are merged once, to tell which candidates are common.
func (c *Chains) Difference(ctx context.Context, q storage.Querier, sets [][]int64) ([]int64, error) {
	if len(sets) < 2 {
		return nil, nil
	}
	inAll := map[int64]int{}
	for _, s := range sets {
		for _, e := range dedupe(s) {
			inAll[e]++
		}
	}
	var shared []int64
	own := make([][]int64, len(sets))
	for i, s := range sets {
		for _, e := range dedupe(s) {
			if inAll[e] == len(sets) {
				if i == 0 {
					shared = append(shared, e)
				}
			} else {
				own[i] = append(own[i], e)
			}
		}
	}
	// candidates: x → how many sets' own chains hold it
	candidates := map[int64]int{}
	for _, o := range own {
		chain, err := c.AuthChain(ctx, q, o)
		if err != nil {
			return nil, err
		}
		for _, x := range chain {
			candidates[x]++
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	common, err := c.load(ctx, q, shared)
	if err != nil {
		return nil, err
	}
	for _, e := range shared {
		for _, x := range common[e] {
			delete(candidates, x)
		}
	}
	var out []int64
	for x, n := range candidates {
		if n < len(sets) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out, nil
}

// load returns the chains of events, from the cache or the index; every event must have one.
func (c *Chains) load(ctx context.Context, q storage.Querier, events []int64) (map[int64][]int64, error) {
	out, err := c.Lookup(ctx, q, events)
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		if _, ok := out[e]; !ok {
			return nil, fmt.Errorf("no auth chain stored for event %d", e)
		}
	}
	return out, nil
}

func (c *Chains) put(nid int64, chain []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cache[nid]; ok {
		return
	}
	// Past the bound, drop arbitrary entries: they are only a copy of the index.
	for k, v := range c.cache {
		if c.size+len(chain)+1 <= c.maxSize {
			break
		}
		delete(c.cache, k)
		c.size -= len(v) + 1
	}
	if len(chain)+1 > c.maxSize {
		return
	}
	c.cache[nid] = chain
	c.size += len(chain) + 1
}

func sortedKeys(set map[int64]struct{}) []int64 {
	out := make([]int64, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func dedupe(s []int64) []int64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// encodeNIDs packs a sorted list as varint deltas.
func encodeNIDs(nids []int64) []byte {
	buf := make([]byte, 0, len(nids)*2)
	var prev int64
	for _, n := range nids {
		buf = binary.AppendUvarint(buf, uint64(n-prev))
		prev = n
	}
	return buf
}

func decodeNIDs(buf []byte) ([]int64, error) {
	var out []int64
	var cur int64
	for len(buf) > 0 {
		d, n := binary.Uvarint(buf)
		if n <= 0 {
			return nil, errCorrupt
		}
		buf = buf[n:]
		cur += int64(d)
		out = append(out, cur)
	}
	return out, nil
}
