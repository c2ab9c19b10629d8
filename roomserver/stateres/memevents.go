package stateres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
)

// ErrNotFound is returned by MemoryEvents for an event it does not hold.
var ErrNotFound = errors.New("event not found")

// MemoryEvents is an Events held in memory that computes auth chains by walking auth_events; it
// suits tests and tiny rooms, and is safe for concurrent use.
type MemoryEvents struct {
	mu       sync.RWMutex
	events   map[id.EventID]auth.Event
	rejected map[id.EventID]bool
}

var (
	_ Events     = (*MemoryEvents)(nil)
	_ Rejections = (*MemoryEvents)(nil)
)

// NewMemoryEvents returns a MemoryEvents holding the given events.
func NewMemoryEvents(events ...auth.Event) *MemoryEvents {
	m := &MemoryEvents{
		events:   make(map[id.EventID]auth.Event, len(events)),
		rejected: make(map[id.EventID]bool),
	}
	m.Add(events...)
	return m
}

// Add stores events, replacing any with the same ID.
func (m *MemoryEvents) Add(events ...auth.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range events {
		m.events[ev.EventID()] = ev
	}
}

// Reject marks events as rejected.
func (m *MemoryEvents) Reject(ids ...id.EventID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ids {
		m.rejected[e] = true
	}
}

// Event returns the event with the given ID, or an error wrapping ErrNotFound.
func (m *MemoryEvents) Event(_ context.Context, eventID id.EventID) (auth.Event, error) {
	m.mu.RLock()
	ev, ok := m.events[eventID]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, eventID)
	}
	return ev, nil
}

// Rejected reports whether the event was marked with Reject.
func (m *MemoryEvents) Rejected(_ context.Context, eventID id.EventID) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rejected[eventID], nil
}

// AuthChain returns the union of the auth chains of the events, sorted.
func (m *MemoryEvents) AuthChain(ctx context.Context, ids []id.EventID) ([]id.EventID, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	seen := make(map[id.EventID]struct{})
	if err := m.walk(ctx, ids, seen, nil); err != nil {
		return nil, err
	}
	out := make([]id.EventID, 0, len(seen))
	for e := range seen {
		out = append(out, e)
	}
	slices.Sort(out)
	return out, nil
}

// AuthChainDifference returns, sorted, the events in the auth chain of some but not all of the
// sets (rooms/v2.md "Auth difference").
func (m *MemoryEvents) AuthChainDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error) {
	if len(sets) < 2 {
		return nil, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()

	// Events in every set put their auth chains in every set's chain: walk those once, and walk
	// each set's own events only down to where they meet that shared chain.
	type count struct{ sets, last int }
	inAll := make(map[id.EventID]count, len(sets[0]))
	for i, s := range sets {
		for _, e := range s {
			if c := inAll[e]; c.sets == 0 || c.last != i {
				inAll[e] = count{sets: c.sets + 1, last: i}
			}
		}
	}
	var common []id.EventID
	for e, c := range inAll {
		if c.sets == len(sets) {
			common = append(common, e)
		}
	}
	shared := make(map[id.EventID]struct{})
	if err := m.walk(ctx, common, shared, nil); err != nil {
		return nil, err
	}
	counts := make(map[id.EventID]int)
	for _, s := range sets {
		var own []id.EventID
		for _, e := range s {
			if inAll[e].sets != len(sets) {
				own = append(own, e)
			}
		}
		seen := make(map[id.EventID]struct{})
		if err := m.walk(ctx, own, seen, shared); err != nil {
			return nil, err
		}
		for e := range seen {
			counts[e]++
		}
	}
	var out []id.EventID
	for e, n := range counts {
		if n < len(sets) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out, nil
}

// walk adds to seen every event reachable through auth_events from ids, not counting ids
// themselves; it neither adds nor walks below events in stop. The caller holds the lock.
func (m *MemoryEvents) walk(ctx context.Context, ids []id.EventID, seen, stop map[id.EventID]struct{}) error {
	var stack []id.EventID
	push := func(e id.EventID) error {
		ev, ok := m.events[e]
		if !ok {
			return fmt.Errorf("auth chain: %w: %s", ErrNotFound, e)
		}
		for _, a := range ev.AuthEventIDs() {
			if _, ok := seen[a]; ok {
				continue
			}
			if _, ok := stop[a]; ok {
				continue
			}
			seen[a] = struct{}{}
			stack = append(stack, a)
		}
		return nil
	}
	for _, e := range ids {
		if err := push(e); err != nil {
			return err
		}
	}
	for n := 0; len(stack) > 0; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if err := push(e); err != nil {
			return err
		}
	}
	return nil
}
