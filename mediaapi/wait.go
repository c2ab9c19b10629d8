package mediaapi

import (
	"errors"
	"sync"
)

var errFlightAborted = errors.New("the shared run of this work failed")

// waiters wakes downloads that wait for an asynchronous upload (spec v1.7, timeout_ms). It
// only wakes: a woken request reads the database again, and also re-reads it now and then
// in case another process stored the upload.
type waiters struct {
	mu sync.Mutex
	m  map[mediaRef]*waitEntry
}

type waitEntry struct {
	ch chan struct{}
	n  int // requests waiting on ch
}

// wait returns a channel closed when ref's upload completes, and a function to call when
// the caller stops waiting.
func (w *waiters) wait(ref mediaRef) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[mediaRef]*waitEntry{}
	}
	e := w.m[ref]
	if e == nil {
		e = &waitEntry{ch: make(chan struct{})}
		w.m[ref] = e
	}
	e.n++
	return e.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		e.n--
		if e.n == 0 && w.m[ref] == e {
			delete(w.m, ref)
		}
	}
}

// wake releases everyone waiting for ref.
func (w *waiters) wake(ref mediaRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.m[ref]; e != nil {
		close(e.ch)
		delete(w.m, ref)
	}
}

// flights runs one piece of work per key at a time: callers that come while it runs wait
// for it and share its result, so two requests never make the same thumbnail, fetch the same
// preview or download the same remote media twice.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	val  any
	err  error
}

// do runs fn for key unless a run is under way, and returns that run's result.
func (f *flights) do(key string, fn func() (any, error)) (any, error) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	if c := f.m[key]; c != nil {
		f.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	// A run that panics leaves this error for those who waited on it.
	c := &flight{done: make(chan struct{}), err: errFlightAborted}
	f.m[key] = c
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.m, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
	return c.val, c.err
}
