package userapi

import (
	"context"
	"maps"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

const (
	// seenThrottle is how often at most a device's last-seen is recorded.
	seenThrottle = time.Minute
	// seenFlushInterval is how long recorded sightings wait to be written, batched into one
	// transaction, so that busy clients do not each take the (on SQLite, single) writer.
	seenFlushInterval = 10 * time.Second
	// seenBatch bounds the updates of one transaction, keeping the writer's hold short.
	seenBatch = 500
	// seenTracked is the size of the throttle map past which entries older than seenThrottle,
	// which no longer throttle anything, are dropped.
	seenTracked = 1 << 16
	// seenCloseTimeout bounds the last write at Close.
	seenCloseTimeout = 5 * time.Second
)

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

type sighting struct {
	ts     int64
	ip, ua string
}

// seenRecorder throttles and batches the last-seen updates of devices. Sightings not yet written
// are overlaid on devices read from the database, so readers never see them go backwards.
//
// Lock order: flushMu, then mu; mu is never held while calling the database or the cache.
type seenRecorder struct {
	u       *Users
	flushMu sync.Mutex // serialises flushes; taken before mu
	mu      sync.Mutex
	last    map[deviceKey]int64 // when a sighting of the device was last taken (ms)
	pending map[deviceKey]sighting
	writing map[deviceKey]sighting // taken from pending by the running flush, until written
	tracked int                    // seenTracked; smaller in tests
	stop    chan struct{}
	done    chan struct{}
}

func newSeenRecorder(u *Users) *seenRecorder {
	s := &seenRecorder{
		u:       u,
		last:    make(map[deviceKey]int64),
		pending: make(map[deviceKey]sighting),
		tracked: seenTracked,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.run()
	return s
}

// RecordSeen notes that a device was used from ip with ua. At most one sighting per device and
// minute is kept, and it reaches the database with the next batch; the request never waits.
func (u *Users) RecordSeen(_ context.Context, d *Device, ip, ua string) {
	if d == nil {
		return
	}
	now := u.nowMS()
	if u.seen.record(deviceKey{d.UserID, d.DeviceID}, sighting{now, ip, ua}) {
		u.cache.touch(d.UserID, d.DeviceID, now, ip, ua)
	}
}

// record keeps sg for k unless k was recorded less than seenThrottle ago.
func (s *seenRecorder) record(k deviceKey, sg sighting) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.last[k]; ok && sg.ts-t < seenThrottle.Milliseconds() && sg.ts >= t {
		return false
	}
	if len(s.last) >= s.tracked {
		s.prune(sg.ts)
	}
	s.last[k] = sg.ts
	s.pending[k] = sg
	return true
}

// prune bounds the throttle map: entries older than seenThrottle throttle nothing and go first;
// if that is not enough, arbitrary ones go too (their devices merely get one write more), down to
// 3/4 of the bound so that the sweep runs once per many records.
func (s *seenRecorder) prune(nowMS int64) {
	for key, t := range s.last {
		if nowMS-t >= seenThrottle.Milliseconds() {
			delete(s.last, key)
		}
	}
	for key := range s.last {
		if len(s.last) < s.tracked*3/4 {
			break
		}
		delete(s.last, key)
	}
}

// overlay puts a sighting not yet written onto d.
func (s *seenRecorder) overlay(d *Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := deviceKey{d.UserID, d.DeviceID}
	for _, m := range []map[deviceKey]sighting{s.writing, s.pending} {
		if sg, ok := m[k]; ok && sg.ts > d.LastSeenTS {
			d.LastSeenTS, d.LastSeenIP, d.LastSeenUA = sg.ts, sg.ip, sg.ua
		}
	}
}

func (s *seenRecorder) run() {
	defer close(s.done)
	t := time.NewTicker(seenFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			// Bounded, so that a stuck database cannot hold Close up for long.
			ctx, cancel := context.WithTimeout(context.Background(), seenFlushInterval)
			s.flush(ctx)
			cancel()
		case <-s.stop:
			ctx, cancel := context.WithTimeout(context.Background(), seenCloseTimeout)
			defer cancel()
			s.flush(ctx)
			return
		}
	}
}

// close stops the writer after a last flush.
func (s *seenRecorder) close() error {
	close(s.stop)
	<-s.done
	return nil
}

// flush writes the pending sightings in batches. A batch that fails is kept for the next flush
// unless newer sightings replaced it meanwhile; last-seen is advisory, so the error is only logged.
func (s *seenRecorder) flush(ctx context.Context) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	s.writing = s.pending
	todo := maps.Clone(s.pending)
	s.pending = make(map[deviceKey]sighting)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.writing = nil
		s.mu.Unlock()
	}()
	for len(todo) > 0 {
		batch := make(map[deviceKey]sighting, min(len(todo), seenBatch))
		for k, sg := range todo {
			if len(batch) == seenBatch {
				break
			}
			batch[k] = sg
			delete(todo, k)
		}
		err := s.u.db.WithTx(ctx, func(tx *storage.Tx) error {
			for k, sg := range batch {
				// The condition keeps a slow batch from overwriting a newer login's values.
				if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4, last_seen_ua = $5
					WHERE user_id = $1 AND device_id = $2 AND last_seen_ts < $3`, k.user, k.device, sg.ts, sg.ip, sg.ua); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.u.log.Warn("userapi: recording devices' last use failed", "devices", len(batch)+len(todo), "error", err)
			maps.Copy(batch, todo)
			s.mu.Lock()
			for k, sg := range batch {
				if _, newer := s.pending[k]; !newer {
					s.pending[k] = sg
				}
			}
			s.mu.Unlock()
			return
		}
	}
}
