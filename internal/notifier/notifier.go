// Package notifier wakes consumers of streams when new positions are written.
//
// Design principle 2: the data lives in the database with stream positions;
// a Notifier only tells waiting consumers (sync long-polls, the federation
// sender, the pusher) that something may have happened for a key, and they
// read the database to find out what. It never carries the only copy of
// anything, so forgetting or waking too often is safe; sleeping through a
// position is not.
//
// Lock order: a Notifier has one mutex and calls no code of its callers while
// holding it.
package notifier

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Wait once the Notifier is closed.
var ErrClosed = errors.New("notifier closed")

// maxRemembered bounds how many keys keep their notified positions. Without a
// bound every room and user ever notified would stay in memory for the life of
// the process. Past it the positions are forgotten, at the price of a spurious
// wake-up (see forget).
const maxRemembered = 1 << 17

// Notifier wakes goroutines waiting for new stream positions on keys such as "room:!abc:example.org".
type Notifier struct {
	mu      sync.Mutex
	streams map[string]int // stream name → index into latest, floor and keyEntry.pos
	latest  []int64        // highest position notified per stream
	// floor is, per stream, an upper bound of the positions forgotten by
	// forget: a key without a remembered position counts as notified at floor.
	floor    []int64
	keys     map[string]*keyEntry
	maxKeys  int // maxRemembered; smaller in tests
	forgetAt int // number of keys at which forget runs
	closed   bool
	done     chan struct{} // closed by Close
}

// keyEntry is what a Notifier knows of one key.
type keyEntry struct {
	pos   []int64 // highest position notified per stream index; nil if none (or forgotten)
	first *link   // the waiters on this key, as an intrusive list
}

// link puts one waiter on one key's list. A waiter's links are allocated in
// one slice, so waiting on 500 rooms costs one allocation, and leaving them is
// unlinking without any search.
type link struct {
	w          *waiter
	entry      *keyEntry
	prev, next *link
}

// waiter is one blocked Wait call.
type waiter struct {
	want  []streamPos // the streams asked for and the position each must pass
	keys  []string
	links []link        // links[i] puts the waiter on keys[i]
	ch    chan struct{} // closed on wake-up
	woken bool
}

type streamPos struct {
	stream int
	pos    int64
}

// New returns a Notifier with no positions and no waiters.
func New() *Notifier {
	return &Notifier{
		streams:  make(map[string]int),
		keys:     make(map[string]*keyEntry),
		maxKeys:  maxRemembered,
		forgetAt: maxRemembered,
		done:     make(chan struct{}),
	}
}

// Notify records that stream reached pos for keys and wakes every waiter on any of those keys whose since
// position for that stream is below pos. Callers call it after their transaction commits.
//
// Its cost is proportional to the number of keys and of waiters on those keys.
func (n *Notifier) Notify(stream string, pos int64, keys ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stream(stream)
	if pos > n.latest[s] {
		n.latest[s] = pos
	}
	for _, key := range keys {
		e := n.keys[key]
		if e == nil {
			e = &keyEntry{}
			n.keys[key] = e
		}
		if len(e.pos) <= s {
			e.pos = append(e.pos, make([]int64, len(n.latest)-len(e.pos))...)
		}
		if pos > e.pos[s] {
			e.pos[s] = pos
		}
		for l := e.first; l != nil; l = l.next {
			if w := l.w; !w.woken && w.wakesAt(s, pos) {
				// Only mark and signal here; the waiter takes itself off its
				// keys, so Notify does not pay for keys it was not asked about.
				w.woken = true
				close(w.ch)
			}
		}
	}
	if len(n.keys) > n.forgetAt {
		n.forget()
	}
}

// wakesAt reports whether a notification of stream at pos concerns w.
func (w *waiter) wakesAt(stream int, pos int64) bool {
	for _, sp := range w.want {
		if sp.stream == stream {
			return pos > sp.pos
		}
	}
	return false
}

// Wait blocks until any key has been notified for some stream in since at a position above since[stream]
// (returning at once if that already happened before Wait was called — no lost wake-ups between a caller's
// database read and its Wait), or ctx is done (ctx.Err()), or the notifier is closed (ErrClosed).
//
// since should hold the positions the caller has just read from the database,
// not older ones: a key notified between an older position and the read would
// wake it again at once. Wait may also return nil spuriously for keys whose
// positions were forgotten to bound memory; a caller re-reads the database
// after every wake-up anyway.
func (n *Notifier) Wait(ctx context.Context, since map[string]int64, keys ...string) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	w := &waiter{want: make([]streamPos, 0, len(since)), keys: keys, links: make([]link, len(keys))}
	for name, pos := range since {
		w.want = append(w.want, streamPos{stream: n.stream(name), pos: pos})
	}
	// First look only, creating nothing, so that the common "already
	// notified" answer leaves no trace; remember what was found for the second pass.
	for i, key := range keys {
		e := n.keys[key]
		if n.passed(e, w.want) {
			n.mu.Unlock()
			return nil
		}
		w.links[i].entry = e
	}
	if err := ctx.Err(); err != nil {
		n.mu.Unlock()
		return err
	}
	w.ch = make(chan struct{})
	for i, key := range keys {
		l := &w.links[i]
		if l.entry == nil {
			// Unknown in the first pass; an earlier copy of a key listed
			// twice may have created it since.
			if l.entry = n.keys[key]; l.entry == nil {
				l.entry = &keyEntry{}
				n.keys[key] = l.entry
			}
		}
		l.w = w
		l.next = l.entry.first
		if l.next != nil {
			l.next.prev = l
		}
		l.entry.first = l
	}
	n.mu.Unlock()

	var err error
	select {
	case <-w.ch:
	case <-ctx.Done():
		err = ctx.Err()
	case <-n.done:
		err = ErrClosed
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if w.woken {
		// A wake-up that raced cancellation or Close still happened; report it
		// so the caller reads what it was woken for.
		err = nil
	}
	n.remove(w)
	return err
}

// passed reports whether key entry e (nil if unknown) is already past a position in want.
func (n *Notifier) passed(e *keyEntry, want []streamPos) bool {
	for _, sp := range want {
		pos := n.floor[sp.stream]
		if e != nil && sp.stream < len(e.pos) && e.pos[sp.stream] > pos {
			pos = e.pos[sp.stream]
		}
		if pos > sp.pos {
			return true
		}
	}
	return false
}

// remove takes w off every key it waits on, dropping entries that no longer hold anything.
func (n *Notifier) remove(w *waiter) {
	for i := range w.links {
		l := &w.links[i]
		e := l.entry
		if l.prev != nil {
			l.prev.next = l.next
		} else {
			e.first = l.next
		}
		if l.next != nil {
			l.next.prev = l.prev
		}
		// Entries with waiters are never replaced (forget keeps them), so
		// e is still the map's entry for this key.
		if e.first == nil && e.pos == nil {
			delete(n.keys, w.keys[i])
		}
	}
}

// forget drops the positions of every key to bound memory. Raising floor to
// the latest positions keeps Wait safe: a waiter on a forgotten key whose
// since is below the old position now returns at once instead of sleeping
// through it. Only waiters whose database read straddles the forgetting can
// see that spurious wake-up, since any read after it returns at least floor.
func (n *Notifier) forget() {
	copy(n.floor, n.latest)
	for key, e := range n.keys {
		if e.first == nil {
			delete(n.keys, key)
		} else {
			e.pos = nil // still waited on; keep the entry for its waiters
		}
	}
	// If waited-on keys alone exceed the bound, don't forget again on every Notify.
	n.forgetAt = max(n.maxKeys, 2*len(n.keys))
}

// stream returns the index of a stream name, adding it if new.
// Stream names come from code, never from clients, so they stay few.
func (n *Notifier) stream(name string) int {
	s, ok := n.streams[name]
	if !ok {
		s = len(n.latest)
		n.streams[name] = s
		n.latest = append(n.latest, 0)
		n.floor = append(n.floor, 0)
	}
	return s
}

// Latest returns the highest position notified for stream (0 if none).
func (n *Notifier) Latest(stream string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.streams[stream]
	if !ok {
		return 0
	}
	return n.latest[s]
}

// Close wakes every waiter with ErrClosed and makes later Waits return ErrClosed (graceful shutdown of long-polls).
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
}
