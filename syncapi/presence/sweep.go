package presence

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage/roomstore"
)

// outputBatch is how many output events the consumer reads at a time.
const outputBatch = 500

// Start runs the sweep and the consumer of the roomserver's output stream until Close; with
// presence disabled it does nothing.
func (t *Tracker) Start() {
	if !t.opts.Enabled {
		return
	}
	t.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		t.stop = cancel
		// Start at the stream's end, read now: what is sent once Start returns is seen.
		if at, err := t.opts.Rooms.OutputPosition(ctx); err == nil {
			t.cursor.Store(at)
			t.started = true
		}
		t.done.Add(2)
		go func() {
			defer t.done.Done()
			t.sweepLoop(ctx)
		}()
		go func() {
			defer t.done.Done()
			t.consumeLoop(ctx)
		}()
	})
}

// Close stops the background work and stores the last activity times still only in memory.
func (t *Tracker) Close() {
	if t.stop == nil {
		return
	}
	t.stop()
	t.done.Wait()
	t.stop = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	if err := t.flush(ctx, func(r *record) bool { return r.active > r.stored }); err != nil {
		t.log.Warn("store last activity times", "error", err)
	}
}

func (t *Tracker) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(t.opts.SweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := t.sweep(ctx); err != nil && ctx.Err() == nil {
			t.log.Error("presence sweep", "error", err) // the next round tries again
		}
	}
}

// sweep makes idle users unavailable and disconnected ones offline, stores last activity times
// that moved by FlushAfter, and evicts offline records nobody needs. Its cost is the number
// of records in memory: users not offline plus those seen lately.
func (t *Tracker) sweep(ctx context.Context) error {
	now := t.nowMS()
	idle, gone := t.opts.IdleAfter.Milliseconds(), t.opts.OfflineAfter.Milliseconds()
	t.writeMu.Lock()
	var due []id.UserID
	t.mu.Lock()
	for u, r := range t.records {
		if sweepChanges(r, now, idle, gone) {
			due = append(due, u)
		}
	}
	t.mu.Unlock()
	written, err := t.mutateLocked(ctx, due, func(_ id.UserID, r *record) bool {
		if !sweepChanges(r, now, idle, gone) {
			return false
		}
		if r.state != Offline && now-r.seen > gone {
			r.state = Offline
		} else {
			r.state = Unavailable
		}
		r.setBy = byServer
		return true
	})
	// An offline user whose client is gone leaves memory; their last activity is stored first,
	// however recent.
	evictable := func(r *record) bool { return r.state == Offline && now-r.seen > gone }
	flushAge := t.opts.FlushAfter.Milliseconds()
	if err == nil {
		err = t.flush(ctx, func(r *record) bool {
			return r.active-r.stored >= flushAge || (evictable(r) && r.active > r.stored)
		})
	}
	if err == nil {
		t.mu.Lock()
		for u, r := range t.records {
			if evictable(r) && (!r.exists || r.active <= r.stored) {
				delete(t.records, u)
			}
		}
		t.mu.Unlock()
	}
	t.writeMu.Unlock()
	t.notify(ctx, written)
	return err
}

// sweepChanges reports whether the sweep changes r's state at now.
func sweepChanges(r *record, now, idle, gone int64) bool {
	return (r.state != Offline && now-r.seen > gone) || (r.state == Online && now-r.active > idle)
}

// flush stores the last activity times of the records due says, without new positions.
// mu is held while due runs; writeMu must be held.
func (t *Tracker) flush(ctx context.Context, due func(*record) bool) error {
	active := map[string]int64{}
	t.mu.Lock()
	for u, r := range t.records {
		if r.exists && r.active > r.stored && due(r) {
			active[string(u)] = r.active
		}
	}
	t.mu.Unlock()
	if err := t.store.SetLastActive(ctx, active); err != nil {
		return err
	}
	t.mu.Lock()
	for u, ts := range active {
		if r := t.records[id.UserID(u)]; r != nil {
			r.stored = max(r.stored, ts)
		}
	}
	t.mu.Unlock()
	return nil
}

// consumeLoop follows the roomserver's output stream, sleeping on the notifier in between.
func (t *Tracker) consumeLoop(ctx context.Context) {
	started := t.started
	t.opts.Notifier.Follow(ctx, t.log, roomstore.StreamOutput, roomserver.OutputKey, func(ctx context.Context) (int64, bool, error) {
		if started {
			n, err := t.consume(ctx)
			return t.cursor.Load(), n > 0, err
		}
		// Start at the stream's end: activity and membership changes from now on are what
		// matter, and the room cache is empty now.
		at, err := t.opts.Rooms.OutputPosition(ctx)
		if err != nil {
			return 0, false, err
		}
		t.cursor.Store(at)
		started = true
		t.rooms.reset() // anything cached before may predate changes the consumer skips
		return at, false, nil
	})
}

// consume reads the next output events: a member event drops its user's cached rooms, and a
// local user joining re-announces their presence to the room; every event a local user sends
// is activity ("sending a message to a room").
func (t *Tracker) consume(ctx context.Context) (int, error) {
	evs, err := t.opts.Rooms.Output(ctx, t.cursor.Load(), outputBatch)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	active := map[id.UserID]int64{}
	joined := map[id.UserID]bool{}
	for _, oe := range evs {
		ev := oe.Event
		if sk := ev.StateKey(); sk != nil && ev.Type() == "m.room.member" {
			u := id.UserID(*sk)
			t.rooms.drop(u)
			if t.isLocal(u) && roomserver.MembershipOf(ev) == "join" {
				joined[u] = true
			}
		}
		if s := ev.Sender(); t.isLocal(s) {
			active[s] = max(active[s], ev.OriginServerTS())
		}
	}
	if err := t.touch(ctx, active, joined); err != nil {
		return 0, err
	}
	t.cursor.Store(evs[len(evs)-1].Pos)
	return len(evs), nil
}
