package roomstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
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

// Bounds of the store's caches, in entries. Measured, a state key takes about 220 bytes (both
// directions) and an event ID about 100, so full caches hold some 50 MB each.
const (
	// MaxCachedStateKeys matches the room cache's bound on state entries, so that the current
	// state of the cached rooms can be numbered without a query.
	MaxCachedStateKeys = 250_000
	// MaxCachedEventIDs keeps the IDs of the state of a few dozen large rooms, which
	// /state_ids answers as IDs.
	MaxCachedEventIDs = 500_000
)

// Store is the roomserver's storage on one database.
type Store struct {
	db     *storage.DB
	Chains *Chains

	// State keys are never renumbered and stored events never deleted, so what these caches
	// hold is never stale; an evicted entry is read from the database again. mu is a leaf lock,
	// held only around map operations.
	mu       sync.Mutex
	keyNID   genCache[StateKey, int64]
	nidKey   genCache[int64, StateKey]
	eventIDs genCache[int64, string]
}

// Open migrates the roomserver's tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	return newStore(db, MaxCachedStateKeys, MaxCachedEventIDs), nil
}

func newStore(db *storage.DB, stateKeys, eventIDs int) *Store {
	return &Store{db: db, Chains: NewChains(4 << 20), keyNID: newGenCache[StateKey, int64](stateKeys),
		nidKey: newGenCache[int64, StateKey](stateKeys), eventIDs: newGenCache[int64, string](eventIDs)}
}

// CacheSizes reports how many state keys (counting the larger direction) and event IDs the
// store's caches hold, for metrics.
func (s *Store) CacheSizes() (stateKeys, eventIDs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.keyNID.len(), s.nidKey.len()), s.eventIDs.len()
}

// genCache is a map bounded by entry count that evicts by generation: entries go into a young
// map, and when it holds half the bound, the old map is dropped whole and the young one takes its
// place. A hit in the old map moves the entry back to the young one, so entries in use stay.
// Every operation costs a few map operations whatever the size; the caller locks.
type genCache[K comparable, V any] struct {
	half       int
	young, old map[K]V
}

func newGenCache[K comparable, V any](maxEntries int) genCache[K, V] {
	return genCache[K, V]{half: max(maxEntries/2, 1), young: map[K]V{}, old: map[K]V{}}
}

func (c *genCache[K, V]) get(k K) (V, bool) {
	if v, ok := c.young[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		c.put(k, v)
	}
	return v, ok
}

func (c *genCache[K, V]) put(k K, v V) {
	delete(c.old, k)
	if _, ok := c.young[k]; !ok && len(c.young) >= c.half {
		c.old, c.young = c.young, make(map[K]V, c.half/8)
	}
	c.young[k] = v
}

func (c *genCache[K, V]) len() int { return len(c.young) + len(c.old) }

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
// What it reads in the transaction is not cached: should the transaction roll back, a number it
// created would not exist, a retry that found it cached would not store the key again, and on
// SQLite the number would go to the next new key as well. Numbers are cached when read outside
// a transaction, as loading a room's state does.
func (s *Store) StateKeyNIDs(ctx context.Context, tx *storage.Tx, keys []StateKey) ([]int64, error) {
	out := make([]int64, len(keys))
	s.mu.Lock()
	missing := false
	for i, k := range keys {
		out[i], _ = s.keyNID.get(k)
		missing = missing || out[i] == 0
	}
	s.mu.Unlock()
	if !missing {
		return out, nil
	}
	for i, k := range keys {
		if out[i] != 0 {
			continue
		}
		n, err := numberStateKey(ctx, tx, k)
		if err != nil {
			return nil, fmt.Errorf("number state key %v: %w", k, err)
		}
		out[i] = n
	}
	return out, nil
}

// numberStateKey returns the number of a state key, creating it if there is none. It looks first:
// keys numbered before are the common case, as new numbers are not cached.
func numberStateKey(ctx context.Context, tx *storage.Tx, k StateKey) (int64, error) {
	var n int64
	for range 2 { // the second look finds a key another writer numbered between the statements
		err := tx.QueryRow(ctx, `SELECT state_key_nid FROM room_state_keys WHERE event_type = $1 AND state_key = $2`, k.Type, k.StateKey).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRow(ctx, `INSERT INTO room_state_keys (event_type, state_key) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING state_key_nid`, k.Type, k.StateKey).Scan(&n)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return n, err
		}
	}
	return 0, errors.New("neither found nor inserted")
}

// rememberStateKey caches a state key's number both ways; the caller holds s.mu.
func (s *Store) rememberStateKey(k StateKey, nid int64) {
	s.keyNID.put(k, nid)
	s.nidKey.put(nid, k)
}

// StateKeys returns the pairs behind state key numbers.
func (s *Store) StateKeys(ctx context.Context, q storage.Querier, nids []int64) (map[int64]StateKey, error) {
	out := make(map[int64]StateKey, len(nids))
	var missing []int64
	s.mu.Lock()
	for _, n := range nids {
		if k, ok := s.nidKey.get(n); ok {
			out[n] = k
		} else {
			missing = append(missing, n)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	found, err := readByNumber(ctx, q, `SELECT state_key_nid, event_type, state_key FROM room_state_keys WHERE state_key_nid`, missing, func(rows *sql.Rows) (int64, StateKey, error) {
		var n int64
		var k StateKey
		err := rows.Scan(&n, &k.Type, &k.StateKey)
		return n, k, err
	})
	if err != nil {
		return nil, fmt.Errorf("load state keys: %w", err)
	}
	maps.Copy(out, found)
	if _, inTx := q.(*storage.Tx); !inTx { // see StateKeyNIDs
		s.mu.Lock()
		for n, k := range found {
			s.rememberStateKey(k, n)
		}
		s.mu.Unlock()
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
