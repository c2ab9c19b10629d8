package searchstore

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/latticehq/lattice/storage"
)

// Query selects the events a user's search matches.
type Query struct {
	// User is the searcher: only events they may see match.
	User string
	// Words must all match, each as the prefix of a word of the text.
	Words []string
	// Types are the event types searched; none matches nothing.
	Types []string
	// Rooms, NotRooms, Senders and NotSenders restrict the results; nil restricts nothing.
	Rooms, NotRooms, Senders, NotSenders []string
	// Before keeps only events before this stream position (0: no bound).
	Before int64
}

// Match is one event that matched a query.
type Match struct {
	Pos     int64
	EventID string
	RoomID  string
	Sender  string
	Rank    float64 // relevance; higher is closer
}

// visibleSQL is true for an event e the user bound to userArg may see, from the user's spans
// (client-server API, "History visibility", with the visibility the event was sent under):
// world_readable events; the user's own join or invite event; events while the user was joined,
// or invited when the room's history was "invited"; and "shared" history before a later join.
// Only rooms the user has been joined to or invited into are searched at all.
func visibleSQL(userArg string) string {
	return `EXISTS (SELECT 1 FROM search_spans s WHERE s.user_id = ` + userArg + ` AND s.room_id = e.room_id AND (
		e.visibility = 'world_readable'
		OR e.pos = s.start_pos
		OR (e.pos > s.start_pos AND e.pos <= s.end_pos AND (s.membership = 'join' OR e.visibility = 'invited'))
		OR (s.membership = 'join' AND e.visibility = 'shared' AND e.pos < s.start_pos)))`
}

// builder assembles one query's text and arguments.
type builder struct {
	engine storage.Engine
	args   []any
	where  []string
}

func (b *builder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// list is an IN operand: the values travel as one JSON array argument, so the query text does
// not depend on their number.
func (b *builder) list(vals []string) string {
	js, _ := json.Marshal(vals)
	if b.engine == storage.EnginePostgres {
		return "(SELECT jsonb_array_elements_text(" + b.arg(string(js)) + "::jsonb))"
	}
	return "(SELECT value FROM json_each(" + b.arg(string(js)) + "))"
}

// matchQuery builds the FROM and WHERE of q: the text match, then every restriction. With
// withRank, rankCol is the relevance expression to select.
func (s *Store) matchQuery(q Query, withRank bool) (b *builder, from, rankCol string) {
	b = &builder{engine: s.db.Engine()}
	if b.engine == storage.EnginePostgres {
		// Each word a prefix ("word:*"), all required; Words holds letters and digits only.
		terms := make([]string, len(q.Words))
		for i, w := range q.Words {
			terms[i] = "'" + w + "':*"
		}
		tsq := "to_tsquery('simple', " + b.arg(strings.Join(terms, " & ")) + ")"
		from = "search_events e"
		b.where = append(b.where, "e.tsv @@ "+tsq)
		if withRank {
			rankCol = "ts_rank(e.tsv, " + tsq + ")"
		}
	} else {
		terms := make([]string, len(q.Words))
		for i, w := range q.Words {
			terms[i] = w + "*"
		}
		from = "search_fts JOIN search_events e ON e.pos = search_fts.docid"
		b.where = append(b.where, "search_fts MATCH "+b.arg(strings.Join(terms, " ")))
		if withRank {
			rankCol = "matchinfo(search_fts, 'pcnalx')"
		}
	}
	b.where = append(b.where, "e.redacted = 0", "e.type IN "+b.list(q.Types))
	if q.Rooms != nil {
		b.where = append(b.where, "e.room_id IN "+b.list(q.Rooms))
	}
	if len(q.NotRooms) > 0 {
		b.where = append(b.where, "e.room_id NOT IN "+b.list(q.NotRooms))
	}
	if q.Senders != nil {
		b.where = append(b.where, "e.sender IN "+b.list(q.Senders))
	}
	if len(q.NotSenders) > 0 {
		b.where = append(b.where, "e.sender NOT IN "+b.list(q.NotSenders))
	}
	if q.Before > 0 {
		b.where = append(b.where, "e.pos < "+b.arg(q.Before))
	}
	b.where = append(b.where, visibleSQL(b.arg(q.User)))
	return b, from, rankCol
}

// empty reports whether q can match nothing, which saves the engines a query they might refuse
// (an FTS MATCH without terms).
func (q Query) empty() bool {
	return len(q.Words) == 0 || len(q.Types) == 0 || (q.Rooms != nil && len(q.Rooms) == 0) ||
		(q.Senders != nil && len(q.Senders) == 0)
}

// Matches returns up to limit matches of q, newest first, with their relevance. PostgreSQL
// ranks with ts_rank; SQLite's FTS4 has no ranking function, so there the rank is Okapi BM25
// computed from matchinfo's statistics.
func (s *Store) Matches(ctx context.Context, q Query, limit int) ([]Match, error) {
	if q.empty() {
		return nil, nil
	}
	b, from, rankCol := s.matchQuery(q, true)
	order := "e.pos"
	if b.engine == storage.EngineSQLite {
		// FTS4 yields its rows in docid order, descending on request, so no sort is needed
		// and LIMIT stops early; ordering by the joined column would sort every match.
		order = "search_fts.docid"
	}
	query := `SELECT e.pos, e.event_id, e.room_id, e.sender, ` + rankCol + ` FROM ` + from + ` WHERE ` +
		strings.Join(b.where, " AND ") + ` ORDER BY ` + order + ` DESC LIMIT ` + b.arg(limit)
	rows, err := s.db.Query(ctx, query, b.args...)
	if err != nil {
		return nil, fmt.Errorf("searchstore: search: %w", err)
	}
	defer rows.Close()
	var out []Match
	for rows.Next() {
		var m Match
		if b.engine == storage.EnginePostgres {
			err = rows.Scan(&m.Pos, &m.EventID, &m.RoomID, &m.Sender, &m.Rank)
		} else {
			var info []byte
			if err = rows.Scan(&m.Pos, &m.EventID, &m.RoomID, &m.Sender, &info); err == nil {
				m.Rank = bm25(info)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("searchstore: search: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// BM25's usual parameters: term-frequency saturation and length normalisation.
const (
	bm25K1 = 1.2
	bm25B  = 0.75
)

// bm25 scores one row from FTS4 matchinfo 'pcnalx' (32-bit native-order integers: phrases p,
// columns c, rows n, average tokens a[c], this row's tokens l[c], then per phrase and column
// the hits in this row, in all rows and the rows with a hit).
func bm25(info []byte) float64 {
	u := func(i int) float64 {
		if 4*i+4 > len(info) {
			return 0
		}
		return float64(binary.NativeEndian.Uint32(info[4*i:]))
	}
	p, c, n := int(u(0)), int(u(1)), u(2)
	var score float64
	for col := range c {
		avg, length := max(u(3+col), 1), u(3+c+col)
		for ph := range p {
			x := 3 + 2*c + 3*(ph*c+col)
			tf, df := u(x), u(x+2)
			if tf == 0 {
				continue
			}
			// The "+1" form of the inverse document frequency stays positive for words in
			// most rows, which small rooms' searches are full of.
			idf := math.Log(1 + (n-df+0.5)/(df+0.5))
			score += idf * tf * (bm25K1 + 1) / (tf + bm25K1*(1-bm25B+bm25B*length/avg))
		}
	}
	return score
}

// Count returns how many events match q.
func (s *Store) Count(ctx context.Context, q Query) (int, error) {
	if q.empty() {
		return 0, nil
	}
	b, from, _ := s.matchQuery(q, false)
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM `+from+` WHERE `+strings.Join(b.where, " AND "), b.args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("searchstore: count: %w", err)
	}
	return n, nil
}

// GroupsMatching returns which of values (room IDs for key "room_id", users for "sender") have
// matches of q: with q.Before set, whether a group has more results past a page.
func (s *Store) GroupsMatching(ctx context.Context, q Query, key string, values []string) (map[string]bool, error) {
	if q.empty() || len(values) == 0 {
		return nil, nil
	}
	col := "e.room_id"
	if key == "sender" {
		col = "e.sender"
	}
	b, from, _ := s.matchQuery(q, false)
	b.where = append(b.where, col+" IN "+b.list(values))
	rows, err := s.db.Query(ctx, `SELECT DISTINCT `+col+` FROM `+from+` WHERE `+strings.Join(b.where, " AND "), b.args...)
	if err != nil {
		return nil, fmt.Errorf("searchstore: groups: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("searchstore: groups: %w", err)
		}
		out[v] = true
	}
	return out, rows.Err()
}

const eventColumns = `pos, event_id, room_id, sender, type, state_key, visibility, redacted`

func (s *Store) scanEvents(rows *sql.Rows, err error) ([]Event, error) {
	if err != nil {
		return nil, fmt.Errorf("searchstore: events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var sk sql.NullString
		var redacted int
		if err := rows.Scan(&e.Pos, &e.EventID, &e.RoomID, &e.Sender, &e.Type, &sk, &e.Visibility, &redacted); err != nil {
			return nil, fmt.Errorf("searchstore: events: %w", err)
		}
		if sk.Valid {
			e.StateKey = &sk.String
		}
		e.Redacted = redacted != 0
		out = append(out, e)
	}
	return out, rows.Err()
}

// Context returns up to before events of the room just before pos (newest first) and up to
// after events just after it (oldest first), of those the user may see (client-server API,
// "Server Side Search", event_context).
func (s *Store) Context(ctx context.Context, user, roomID string, pos int64, before, after int) (prev, next []Event, err error) {
	vis := visibleSQL("$2")
	if before > 0 {
		prev, err = s.scanEvents(s.db.Query(ctx, `SELECT `+eventColumns+` FROM search_events e WHERE e.room_id = $1 AND e.pos < $3 AND `+
			vis+` ORDER BY e.pos DESC LIMIT $4`, roomID, user, pos, before))
		if err != nil {
			return nil, nil, err
		}
	}
	if after > 0 {
		next, err = s.scanEvents(s.db.Query(ctx, `SELECT `+eventColumns+` FROM search_events e WHERE e.room_id = $1 AND e.pos > $3 AND `+
			vis+` ORDER BY e.pos LIMIT $4`, roomID, user, pos, after))
	}
	return prev, next, err
}

// MemberBefore returns a user's last m.room.member event in a room before pos, nil if none: the
// profile the user had then.
func (s *Store) MemberBefore(ctx context.Context, roomID, userID string, pos int64) (*Event, error) {
	evs, err := s.scanEvents(s.db.Query(ctx, `SELECT `+eventColumns+` FROM search_events
		WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2 AND pos < $3 ORDER BY pos DESC LIMIT 1`, roomID, userID, pos))
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return &evs[0], nil
}

// Redacted returns which of eventIDs are redacted.
func (s *Store) Redacted(ctx context.Context, eventIDs []string) (map[string]bool, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	b := &builder{engine: s.db.Engine()}
	rows, err := s.db.Query(ctx, `SELECT event_id FROM search_events WHERE redacted = 1 AND event_id IN `+b.list(eventIDs), b.args...)
	if err != nil {
		return nil, fmt.Errorf("searchstore: redacted events: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, fmt.Errorf("searchstore: redacted events: %w", err)
		}
		out[e] = true
	}
	return out, rows.Err()
}
