// Package roomstore is the roomserver's storage: rooms, events and room state as shared
// snapshots.
package roomstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/latticehq/lattice/storage"
)

// Entry is one piece of state: the numeric ID of a (type, state_key) pair and of the event that
// holds it. Event 0 in a delta removes the key (state resolution can drop a key).
type Entry struct {
	Key   int64
	Event int64
}

// State is a room state by numeric IDs: state key → event.
type State map[int64]int64

// baseFraction sets how often a snapshot is stored in full: once the deltas since the last
// full snapshot hold more than size/baseFraction entries. Each state change then costs about
// baseFraction+1 stored entries however large the room is, and reading any snapshot touches
// one full snapshot and at most size/baseFraction delta entries.
const baseFraction = 8

// minBaseInterval keeps tiny rooms from writing a full snapshot on every change.
const minBaseInterval = 8

// Snapshot metadata kept with each row, so deciding how to store the next one needs no walk.
type snapshotMeta struct {
	nid       int64
	baseNID   int64 // the full snapshot this one builds on (itself when full)
	baseSize  int64 // entries in that full snapshot
	sinceBase int64 // delta entries between the full snapshot and this one, this one's included
}

// AddSnapshot stores the state that results from applying changes to the snapshot parent (0:
// the empty state) and returns its ID. It must run inside the writing transaction of the event
// that the snapshot belongs to. With no changes it returns parent itself: snapshots are shared.
func AddSnapshot(ctx context.Context, tx *storage.Tx, roomNID, parent int64, changes []Entry) (int64, error) {
	changes = normalise(changes)
	if len(changes) == 0 && parent != 0 {
		return parent, nil
	}
	var meta snapshotMeta
	if parent != 0 {
		err := tx.QueryRow(ctx, `SELECT snapshot_nid, base_nid, base_size, since_base FROM room_state_snapshots WHERE snapshot_nid = $1`, parent).
			Scan(&meta.nid, &meta.baseNID, &meta.baseSize, &meta.sinceBase)
		if err != nil {
			return 0, fmt.Errorf("load snapshot %d: %w", parent, err)
		}
	}
	since := meta.sinceBase + int64(len(changes))
	if parent != 0 && since <= max(meta.baseSize/baseFraction, minBaseInterval) {
		var nid int64
		err := tx.QueryRow(ctx, `INSERT INTO room_state_snapshots (room_nid, parent_nid, base_nid, is_base, base_size, since_base, entries)
			VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING snapshot_nid`,
			roomNID, parent, meta.baseNID, meta.baseSize, since, encodeEntries(changes)).Scan(&nid)
		if err != nil {
			return 0, fmt.Errorf("store state delta: %w", err)
		}
		return nid, nil
	}
	// A full snapshot: the parent's state with the changes applied.
	state := State{}
	if parent != 0 {
		var err error
		if state, err = loadState(ctx, tx, parent); err != nil {
			return 0, err
		}
	}
	apply(state, changes)
	full := make([]Entry, 0, len(state))
	for k, e := range state {
		full = append(full, Entry{k, e})
	}
	full = normalise(full)
	var nid int64
	err := tx.QueryRow(ctx, `INSERT INTO room_state_snapshots (room_nid, parent_nid, base_nid, is_base, base_size, since_base, entries)
		VALUES ($1, $2, 0, 1, $3, 0, $4) RETURNING snapshot_nid`,
		roomNID, parent, len(full), encodeEntries(full)).Scan(&nid)
	if err != nil {
		return 0, fmt.Errorf("store full state: %w", err)
	}
	// A full snapshot is its own base; the ID is known only after the insert.
	if _, err := tx.Exec(ctx, `UPDATE room_state_snapshots SET base_nid = $1 WHERE snapshot_nid = $1`, nid); err != nil {
		return 0, fmt.Errorf("store full state: %w", err)
	}
	return nid, nil
}

// LoadState returns the whole state of a snapshot (0: the empty state).
func LoadState(ctx context.Context, q storage.Querier, snapshot int64) (State, error) {
	return loadState(ctx, q, snapshot)
}

func loadState(ctx context.Context, q storage.Querier, snapshot int64) (State, error) {
	state := State{}
	if snapshot == 0 {
		return state, nil
	}
	// One query fetches the chain from the snapshot back to its full snapshot.
	rows, err := q.Query(ctx, `WITH RECURSIVE chain(snapshot_nid, parent_nid, is_base, entries, n) AS (
			SELECT snapshot_nid, parent_nid, is_base, entries, 0 FROM room_state_snapshots WHERE snapshot_nid = $1
			UNION ALL
			SELECT s.snapshot_nid, s.parent_nid, s.is_base, s.entries, c.n + 1
			FROM room_state_snapshots s JOIN chain c ON s.snapshot_nid = c.parent_nid
			WHERE c.is_base = 0
		) SELECT is_base, entries FROM chain ORDER BY n DESC`, snapshot)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %d: %w", snapshot, err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var isBase int
		var blob []byte
		if err := rows.Scan(&isBase, &blob); err != nil {
			return nil, fmt.Errorf("load snapshot %d: %w", snapshot, err)
		}
		if !found && isBase != 1 {
			return nil, fmt.Errorf("load snapshot %d: chain does not start at a full snapshot", snapshot)
		}
		found = true
		entries, err := decodeEntries(blob)
		if err != nil {
			return nil, fmt.Errorf("load snapshot %d: %w", snapshot, err)
		}
		if isBase == 1 {
			state = make(State, len(entries))
		}
		apply(state, entries)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load snapshot %d: %w", snapshot, err)
	}
	if !found {
		return nil, fmt.Errorf("load snapshot %d: %w", snapshot, sql.ErrNoRows)
	}
	return state, nil
}

func apply(state State, entries []Entry) {
	for _, e := range entries {
		if e.Event == 0 {
			delete(state, e.Key)
		} else {
			state[e.Key] = e.Event
		}
	}
}

// normalise sorts entries by key and keeps the last change of each key.
func normalise(entries []Entry) []Entry {
	slices.SortStableFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Key, b.Key) })
	out := entries[:0]
	for i, e := range entries {
		if i+1 < len(entries) && entries[i+1].Key == e.Key {
			continue
		}
		out = append(out, e)
	}
	return out
}

// encodeEntries packs sorted entries as varints: key deltas (keys are sorted) and event IDs.
func encodeEntries(entries []Entry) []byte {
	buf := make([]byte, 0, len(entries)*5)
	var prev int64
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(e.Key-prev))
		buf = binary.AppendUvarint(buf, uint64(e.Event))
		prev = e.Key
	}
	return buf
}

var errCorrupt = errors.New("corrupt state entries")

func decodeEntries(buf []byte) ([]Entry, error) {
	var out []Entry
	var key int64
	for len(buf) > 0 {
		dk, n := binary.Uvarint(buf)
		if n <= 0 {
			return nil, errCorrupt
		}
		buf = buf[n:]
		ev, n := binary.Uvarint(buf)
		if n <= 0 {
			return nil, errCorrupt
		}
		buf = buf[n:]
		key += int64(dk)
		out = append(out, Entry{Key: key, Event: int64(ev)})
	}
	return out, nil
}
