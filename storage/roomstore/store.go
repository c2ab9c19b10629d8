package roomstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/latticehq/lattice/storage"
)

// ErrNotFound is returned for a room or event the store does not have.
var ErrNotFound = errors.New("roomstore: not found")

// StreamOutput is the roomserver's output stream: every event that enters a room's timeline gets
// a position on it, and sync, the federation sender, appservices and push read it in order.
const StreamOutput = "roomserver_output"

// StateKey is a (type, state_key) pair.
type StateKey struct{ Type, StateKey string }

// Store is the roomserver's storage on one database.
type Store struct {
	db     *storage.DB
	Chains *Chains

	mu     sync.RWMutex
	keyNID map[StateKey]int64 // state keys are never renumbered, so these caches are never stale
	nidKey map[int64]StateKey
}

// Open migrates the roomserver's tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	return &Store{db: db, Chains: NewChains(4 << 20), keyNID: map[StateKey]int64{}, nidKey: map[int64]StateKey{}}, nil
}

// DB is the database the store is on.
func (s *Store) DB() *storage.DB { return s.db }

// Room is one room as the store knows it.
type Room struct {
	NID      int64
	ID       string
	Version  string
	Snapshot int64 // the current state
}

// CreateRoom records a new room and returns its numeric ID.
func (s *Store) CreateRoom(ctx context.Context, tx *storage.Tx, roomID, version string) (int64, error) {
	var nid int64
	err := tx.QueryRow(ctx, `INSERT INTO rooms (room_id, room_version, snapshot_nid) VALUES ($1, $2, 0) RETURNING room_nid`, roomID, version).Scan(&nid)
	if err != nil {
		return 0, fmt.Errorf("create room %s: %w", roomID, err)
	}
	return nid, nil
}

// Room returns a room by its ID, ErrNotFound if unknown.
func (s *Store) Room(ctx context.Context, q storage.Querier, roomID string) (*Room, error) {
	r := &Room{ID: roomID}
	err := q.QueryRow(ctx, `SELECT room_nid, room_version, snapshot_nid FROM rooms WHERE room_id = $1`, roomID).Scan(&r.NID, &r.Version, &r.Snapshot)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("load room %s: %w", roomID, err)
	}
	return r, nil
}

// SetCurrentState moves a room's current state to a snapshot.
func (s *Store) SetCurrentState(ctx context.Context, tx *storage.Tx, roomNID, snapshot int64) error {
	if _, err := tx.Exec(ctx, `UPDATE rooms SET snapshot_nid = $1 WHERE room_nid = $2`, snapshot, roomNID); err != nil {
		return fmt.Errorf("set current state of room %d: %w", roomNID, err)
	}
	return nil
}

// StateKeyNIDs numbers state keys, creating numbers for new ones; the result is in keys' order.
func (s *Store) StateKeyNIDs(ctx context.Context, tx *storage.Tx, keys []StateKey) ([]int64, error) {
	out := make([]int64, len(keys))
	s.mu.RLock()
	missing := false
	for i, k := range keys {
		out[i] = s.keyNID[k]
		missing = missing || out[i] == 0
	}
	s.mu.RUnlock()
	if !missing {
		return out, nil
	}
	for i, k := range keys {
		if out[i] != 0 {
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO room_state_keys (event_type, state_key) VALUES ($1, $2) ON CONFLICT DO NOTHING`, k.Type, k.StateKey); err != nil {
			return nil, fmt.Errorf("number state key %v: %w", k, err)
		}
		if err := tx.QueryRow(ctx, `SELECT state_key_nid FROM room_state_keys WHERE event_type = $1 AND state_key = $2`, k.Type, k.StateKey).Scan(&out[i]); err != nil {
			return nil, fmt.Errorf("number state key %v: %w", k, err)
		}
	}
	// Cached only after commit would be stricter, but a number from a rolled-back insert is
	// only ever reused for the same key, which the retry inserts again.
	s.mu.Lock()
	for i, k := range keys {
		s.keyNID[k], s.nidKey[out[i]] = out[i], k
	}
	s.mu.Unlock()
	return out, nil
}

// StateKeys returns the pairs behind state key numbers.
func (s *Store) StateKeys(ctx context.Context, q storage.Querier, nids []int64) (map[int64]StateKey, error) {
	out := make(map[int64]StateKey, len(nids))
	var missing []int64
	s.mu.RLock()
	for _, n := range nids {
		if k, ok := s.nidKey[n]; ok {
			out[n] = k
		} else {
			missing = append(missing, n)
		}
	}
	s.mu.RUnlock()
	err := inBatches(ctx, q, `SELECT state_key_nid, event_type, state_key FROM room_state_keys WHERE state_key_nid IN `, intArgs(missing), func(rows *sql.Rows) error {
		var n int64
		var k StateKey
		if err := rows.Scan(&n, &k.Type, &k.StateKey); err != nil {
			return err
		}
		out[n] = k
		s.mu.Lock()
		s.keyNID[k], s.nidKey[n] = n, k
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load state keys: %w", err)
	}
	return out, nil
}

// StateOf returns a snapshot's state by (type, state_key), with event numbers.
func (s *Store) StateOf(ctx context.Context, q storage.Querier, snapshot int64) (map[StateKey]int64, error) {
	st, err := LoadState(ctx, q, snapshot)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(st))
	for k := range st {
		nids = append(nids, k)
	}
	keys, err := s.StateKeys(ctx, q, nids)
	if err != nil {
		return nil, err
	}
	out := make(map[StateKey]int64, len(st))
	for k, ev := range st {
		out[keys[k]] = ev
	}
	return out, nil
}
