package roomstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/latticehq/lattice/storage"
)

// Light lookups: numbers, IDs and flags of events without their JSON, for the input pipeline
// and state resolution, which need to know what is stored far more often than what it says.

// EventNIDs returns the numbers of the stored events among ids; unknown IDs are left out.
func (s *Store) EventNIDs(ctx context.Context, q storage.Querier, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	err := inBatches(ctx, q, `SELECT event_id, event_nid FROM room_events WHERE event_id IN `, strArgs(ids), func(rows *sql.Rows) error {
		var eid string
		var nid int64
		if err := rows.Scan(&eid, &nid); err != nil {
			return err
		}
		out[eid] = nid
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up event numbers: %w", err)
	}
	return out, nil
}

// EventIDs returns the IDs of stored events by number; unknown numbers are left out. IDs read
// outside a transaction are cached: they are committed, and a committed event keeps its number,
// whereas on SQLite the number of a rolled-back insert is handed out again.
func (s *Store) EventIDs(ctx context.Context, q storage.Querier, nids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(nids))
	var missing []int64
	s.mu.Lock()
	for _, n := range nids {
		if eid, ok := s.eventIDs.get(n); ok {
			out[n] = eid
		} else {
			missing = append(missing, n)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	found, err := readByNumber(ctx, q, `SELECT event_nid, event_id FROM room_events WHERE event_nid`, missing, func(rows *sql.Rows) (int64, string, error) {
		var nid int64
		var eid string
		err := rows.Scan(&nid, &eid)
		return nid, eid, err
	})
	if err != nil {
		return nil, fmt.Errorf("look up event IDs: %w", err)
	}
	maps.Copy(out, found)
	if _, inTx := q.(*storage.Tx); !inTx {
		s.mu.Lock()
		for n, eid := range found {
			s.eventIDs.put(n, eid)
		}
		s.mu.Unlock()
	}
	return out, nil
}

// EventJSON is what reading a stored event back needs.
type EventJSON struct {
	EventID string
	RoomNID int64
	JSON    []byte
}

// EventJSONByNID returns the IDs, rooms and JSON of stored events by number, leaving out unknown
// numbers: EventsByNID without the columns that parsing the JSON does not need.
func (s *Store) EventJSONByNID(ctx context.Context, q storage.Querier, nids []int64) (map[int64]EventJSON, error) {
	out, err := readByNumber(ctx, q, `SELECT event_nid, event_id, room_nid, json FROM room_events WHERE event_nid`, nids, func(rows *sql.Rows) (int64, EventJSON, error) {
		var nid int64
		var e EventJSON
		err := rows.Scan(&nid, &e.EventID, &e.RoomNID, &e.JSON)
		return nid, e, err
	})
	if err != nil {
		return nil, fmt.Errorf("load events: %w", err)
	}
	return out, nil
}

const headerColumns = `event_nid, event_id, room_nid, event_type, state_key, depth, origin_server_ts,
	state_before_nid, rejected, soft_failed, outlier, stream_pos`

// EventHeadersByID returns the stored events among ids with everything but their JSON (which
// is left nil); unknown IDs are left out.
func (s *Store) EventHeadersByID(ctx context.Context, q storage.Querier, ids []string) ([]*Event, error) {
	return s.headersIn(ctx, q, "event_id", strArgs(ids))
}

// EventHeadersByNID is EventHeadersByID by event number.
func (s *Store) EventHeadersByNID(ctx context.Context, q storage.Querier, nids []int64) ([]*Event, error) {
	return s.headersIn(ctx, q, "event_nid", intArgs(nids))
}

func (s *Store) headersIn(ctx context.Context, q storage.Querier, column string, args []any) ([]*Event, error) {
	var out []*Event
	err := inBatches(ctx, q, `SELECT `+headerColumns+` FROM room_events WHERE `+column+` IN `, args, func(rows *sql.Rows) error {
		e := &Event{}
		var stateKey sql.NullString
		var rejected, softFailed, outlier int
		if err := rows.Scan(&e.NID, &e.EventID, &e.RoomNID, &e.Type, &stateKey, &e.Depth, &e.OriginServerTS,
			&e.StateBefore, &rejected, &softFailed, &outlier, &e.StreamPos); err != nil {
			return err
		}
		if stateKey.Valid {
			e.StateKey = &stateKey.String
		}
		e.Rejected, e.SoftFailed, e.Outlier = rejected == 1, softFailed == 1, outlier == 1
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load event headers: %w", err)
	}
	return out, nil
}

// KnownStateKeyNIDs returns the numbers of state keys in keys' order, 0 for a key that has
// none. It never numbers a key, so it needs no transaction.
func (s *Store) KnownStateKeyNIDs(ctx context.Context, q storage.Querier, keys []StateKey) ([]int64, error) {
	out := make([]int64, len(keys))
	var missing []int
	s.mu.Lock()
	for i, k := range keys {
		if out[i], _ = s.keyNID.get(k); out[i] == 0 {
			missing = append(missing, i)
		}
	}
	s.mu.Unlock()
	for _, i := range missing {
		k := keys[i]
		err := q.QueryRow(ctx, `SELECT state_key_nid FROM room_state_keys WHERE event_type = $1 AND state_key = $2`, k.Type, k.StateKey).Scan(&out[i])
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("look up state key %v: %w", k, err)
		}
		if _, inTx := q.(*storage.Tx); !inTx { // see StateKeyNIDs
			s.mu.Lock()
			s.rememberStateKey(k, out[i])
			s.mu.Unlock()
		}
	}
	return out, nil
}

// RoomByNID returns a room by its number, ErrNotFound if unknown.
func (s *Store) RoomByNID(ctx context.Context, q storage.Querier, nid int64) (*Room, error) {
	r := &Room{NID: nid}
	err := q.QueryRow(ctx, `SELECT room_id, room_version, snapshot_nid FROM rooms WHERE room_nid = $1`, nid).Scan(&r.ID, &r.Version, &r.Snapshot)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("load room %d: %w", nid, err)
	}
	return r, nil
}

// inBatches runs prefix followed by an IN list of args (all int64 or all string), calling scan
// for each row. The list travels as one JSON array parameter rather than one parameter per
// value, so the statement is the same for every list and both engines reuse its prepared form;
// lists of thousands cost one round trip.
func inBatches(ctx context.Context, q storage.Querier, prefix string, args []any, scan func(*sql.Rows) error) error {
	if len(args) == 0 {
		return nil
	}
	list, err := json.Marshal(args)
	if err != nil {
		return err
	}
	sub := `(SELECT value FROM json_each($1))`
	if q.Engine() == storage.EnginePostgres {
		sub = `(SELECT jsonb_array_elements_text($1::jsonb))`
		if _, isInt := args[0].(int64); isInt {
			sub = `(SELECT jsonb_array_elements_text($1::jsonb)::bigint)`
		}
	}
	rows, err := q.Query(ctx, prefix+sub, string(list))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func strArgs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func intArgs(ns []int64) []any {
	out := make([]any, len(ns))
	for i, n := range ns {
		out[i] = n
	}
	return out
}

// minRangeScan is the shortest list of numbers readByNumber considers reading with a range scan.
const minRangeScan = 256

// denseness is the share of a range's rows that must be wanted for readByNumber to scan the
// range. Measured reading 5 000 event IDs among 10 000 events: on SQLite the scan wins from about
// 90%, on PostgreSQL already at 50%.
func denseness(e storage.Engine) float64 {
	if e == storage.EnginePostgres {
		return 0.5
	}
	return 0.9
}

// readByNumber reads rows by their numbers: query selects the number, a primary key, then the
// other columns, and ends in "WHERE <the key>"; scan reads one row. Numbers not stored are left
// out. A long list that fills most of its range is read with one range scan in key order, which
// skips the rows not asked for; it reads at most 1/denseness rows per number asked for.
func readByNumber[T any](ctx context.Context, q storage.Querier, query string, nids []int64, scan func(*sql.Rows) (int64, T, error)) (map[int64]T, error) {
	out := make(map[int64]T, len(nids))
	if len(nids) == 0 {
		return out, nil
	}
	sorted := slices.Clone(nids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	lo, hi := sorted[0], sorted[len(sorted)-1]
	span := float64(hi) - float64(lo) + 1 // in floating point, which cannot overflow
	if len(sorted) < minRangeScan || float64(len(sorted)) < denseness(q.Engine())*span {
		err := inBatches(ctx, q, query+` IN `, intArgs(sorted), func(rows *sql.Rows) error {
			n, v, err := scan(rows)
			if err == nil {
				out[n] = v
			}
			return err
		})
		return out, err
	}
	rows, err := q.Query(ctx, query+` BETWEEN $1 AND $2 ORDER BY 1`, lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		n, v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		for i < len(sorted) && sorted[i] < n {
			i++
		}
		if i < len(sorted) && sorted[i] == n {
			out[n] = v
		}
	}
	return out, rows.Err()
}
