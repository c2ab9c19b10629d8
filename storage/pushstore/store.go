// Package pushstore keeps the users' notifications (client-server API, "Push Notifications").
//
// A notification is not written once per user: an event whose outcome under the default push
// rules notifies gets one row in push_events, which stands for every local member who was
// joined when it arrived (but its sender) and has no row of their own for it; push_notifications
// holds only the users whose outcome differs (custom rules, mentions, invites): notify false
// takes them out of the event's notification, notify true gives them their own actions. So
// storing a message costs the same in a room of ten or ten thousand local members.
//
// Rows are written by the sync component's consumer in the transaction that stores the events,
// so /sync's counts always match its timelines; a notification's position is its event's
// position on the roomserver's output stream. Read state is one position per user, room and
// thread (push_read), moved by receipts and the user's own events, never backwards.
package pushstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/latticehq/lattice/storage"
)

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "notifications, read positions, pusher cursors",
	// thread_id is "" for the main timeline; actions are the matched rule's actions as JSON.
	// push_threads remembers each thread's newest notifying event, so that counting reads
	// only the threads that moved since a user's read positions.
	SQL: `CREATE TABLE push_events (
		event_pos BIGINT  NOT NULL PRIMARY KEY,
		room_id   TEXT    NOT NULL,
		event_id  TEXT    NOT NULL,
		thread_id TEXT    NOT NULL,
		sender    TEXT    NOT NULL,
		highlight BOOLEAN NOT NULL,
		actions   TEXT    NOT NULL,
		ts        BIGINT  NOT NULL
	);
	CREATE INDEX push_events_thread ON push_events (room_id, thread_id, event_pos);
	CREATE INDEX push_events_room ON push_events (room_id, event_pos);
	CREATE INDEX push_events_ts ON push_events (ts);
	CREATE TABLE push_threads (
		room_id   TEXT   NOT NULL,
		thread_id TEXT   NOT NULL,
		last_pos  BIGINT NOT NULL,
		PRIMARY KEY (room_id, thread_id)
	);
	CREATE TABLE push_notifications (
		user_id   TEXT    NOT NULL,
		event_pos BIGINT  NOT NULL,
		room_id   TEXT    NOT NULL,
		event_id  TEXT    NOT NULL,
		thread_id TEXT    NOT NULL,
		notify    BOOLEAN NOT NULL,
		highlight BOOLEAN NOT NULL,
		actions   TEXT    NOT NULL,
		ts        BIGINT  NOT NULL,
		PRIMARY KEY (user_id, event_pos)
	);
	CREATE INDEX push_notifications_room ON push_notifications (user_id, room_id, event_pos);
	CREATE INDEX push_notifications_pos ON push_notifications (event_pos);
	CREATE TABLE push_read (
		user_id   TEXT   NOT NULL,
		room_id   TEXT   NOT NULL,
		thread_id TEXT   NOT NULL,
		pos       BIGINT NOT NULL,
		PRIMARY KEY (user_id, room_id, thread_id)
	);
	CREATE TABLE push_pusher_cursors (
		user_id TEXT   NOT NULL,
		app_id  TEXT   NOT NULL,
		pushkey TEXT   NOT NULL,
		pos     BIGINT NOT NULL,
		PRIMARY KEY (user_id, app_id, pushkey)
	);`,
}}

// AllThreads is the thread of a read position that covers every thread (an unthreaded
// receipt); no thread root is "*".
const AllThreads = "*"

// Store is the notification tables on one database.
type Store struct{ db *storage.DB }

// Open migrates the tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "pushstore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Event is a notifying event: the outcome of its members with the default rules, or, in a
// user's row, that user's own.
type Event struct {
	EventPos  int64
	RoomID    string
	EventID   string
	ThreadID  string
	Sender    string
	Highlight bool
	Actions   json.RawMessage
	TS        int64
}

// InsertEvent records an event whose outcome under the default rules notifies. Writing it
// again (a consumer retrying after a failed commit) changes nothing.
func (s *Store) InsertEvent(ctx context.Context, tx *storage.Tx, e Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO push_events (event_pos, room_id, event_id, thread_id, sender, highlight, actions, ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_pos) DO NOTHING`,
		e.EventPos, e.RoomID, e.EventID, e.ThreadID, e.Sender, e.Highlight, string(e.Actions), e.TS)
	if err != nil {
		return fmt.Errorf("pushstore: notification of %s: %w", e.EventID, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO push_threads (room_id, thread_id, last_pos) VALUES ($1, $2, $3)
		ON CONFLICT (room_id, thread_id) DO UPDATE SET last_pos = excluded.last_pos WHERE push_threads.last_pos < excluded.last_pos`,
		e.RoomID, e.ThreadID, e.EventPos)
	if err != nil {
		return fmt.Errorf("pushstore: thread of %s: %w", e.EventID, err)
	}
	return nil
}

// Batch is the users whose outcome for one event is Event's (with Notify) or no notification.
type Batch struct {
	Event
	Users  []string
	Notify bool
}

// roomList encodes the rooms of a room → position map as a JSON array for jsonList.
func roomList(rooms map[string]int64) (string, error) {
	list := make([]string, 0, len(rooms))
	for r := range rooms {
		list = append(list, r)
	}
	b, err := json.Marshal(list)
	return string(b), err
}

// jsonList is the SQL that reads the JSON array parameter n as rows of text values.
func jsonList(q storage.Querier, n string) string {
	if q.Engine() == storage.EnginePostgres {
		return `(SELECT jsonb_array_elements_text(` + n + `::jsonb) AS value)`
	}
	return `(SELECT value FROM json_each(` + n + `))`
}

// Insert writes the users' own outcomes for an event in one statement: the user IDs travel as
// one JSON array (WHERE TRUE keeps SQLite from reading ON CONFLICT as a join clause).
func (s *Store) Insert(ctx context.Context, tx *storage.Tx, b Batch) error {
	if len(b.Users) == 0 {
		return nil
	}
	users, err := json.Marshal(b.Users)
	if err != nil {
		return err
	}
	actions := string(b.Actions)
	if actions == "" {
		actions = "[]"
	}
	_, err = tx.Exec(ctx, `INSERT INTO push_notifications (user_id, event_pos, room_id, event_id, thread_id, notify, highlight, actions, ts)
		SELECT u.value, $2, $3, $4, $5, $6, $7, $8, $9 FROM `+jsonList(tx, "$1")+` u
		WHERE TRUE ON CONFLICT (user_id, event_pos) DO NOTHING`,
		string(users), b.EventPos, b.RoomID, b.EventID, b.ThreadID, b.Notify, b.Highlight, actions, b.TS)
	if err != nil {
		return fmt.Errorf("pushstore: notifications of %s: %w", b.EventID, err)
	}
	return nil
}

// MarkRead moves the user's read position of a thread ("" the main timeline, AllThreads every
// thread) of the room to upTo, unless it is further already.
func (s *Store) MarkRead(ctx context.Context, tx *storage.Tx, userID, roomID, thread string, upTo int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO push_read (user_id, room_id, thread_id, pos) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET pos = excluded.pos WHERE push_read.pos < excluded.pos`,
		userID, roomID, thread, upTo)
	if err != nil {
		return fmt.Errorf("pushstore: mark read for %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// marks are a user's read positions: room → thread → position.
type marks map[string]map[string]int64

// read returns the position up to which a thread of a room is read, at least floor.
func (m marks) read(room, thread string, floor int64) int64 {
	return max(floor, m[room][AllThreads], m[room][thread])
}

// marks reads the user's read positions in rooms.
func (s *Store) marks(ctx context.Context, userID string, rooms map[string]int64) (marks, error) {
	roomsJSON, err := roomList(rooms)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT room_id, thread_id, pos FROM push_read WHERE user_id = $1 AND room_id IN `+jsonList(s.db, "$2"),
		userID, roomsJSON)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := marks{}
	for rows.Next() {
		var room, thread string
		var pos int64
		if err := rows.Scan(&room, &thread, &pos); err != nil {
			return nil, err
		}
		if m[room] == nil {
			m[room] = map[string]int64{}
		}
		m[room][thread] = pos
	}
	return m, rows.Err()
}

// Counts is the number of unread notifications of one room and thread, and how many of them
// highlight.
type Counts struct {
	Notifications int
	Highlights    int
}

// Unread returns the user's unread counts in rooms, given as room → the position from which
// the user has been joined (their notifications start after it), by room and thread; rooms and
// threads without unread notifications are absent. Only the threads that notified since the
// user's read positions are counted, and only their unread events are read.
func (s *Store) Unread(ctx context.Context, userID string, rooms map[string]int64) (map[string]map[string]Counts, error) {
	out := map[string]map[string]Counts{}
	if len(rooms) == 0 {
		return out, nil
	}
	m, err := s.marks(ctx, userID, rooms)
	if err != nil {
		return nil, fmt.Errorf("pushstore: read positions of %s: %w", userID, err)
	}
	roomsJSON, err := roomList(rooms)
	if err != nil {
		return nil, err
	}
	add := func(room, thread string, n, h int) {
		if out[room] == nil {
			out[room] = map[string]Counts{}
		}
		c := out[room][thread]
		c.Notifications += n
		c.Highlights += h
		out[room][thread] = c
	}

	// Events of the default outcome, thread by thread.
	rows, err := s.db.Query(ctx, `SELECT room_id, thread_id, last_pos FROM push_threads WHERE room_id IN `+jsonList(s.db, "$1"), roomsJSON)
	if err != nil {
		return nil, fmt.Errorf("pushstore: threads: %w", err)
	}
	type thread struct {
		room, thread string
		from         int64
	}
	var moved []thread
	for rows.Next() {
		var t thread
		var last int64
		if err := rows.Scan(&t.room, &t.thread, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pushstore: threads: %w", err)
		}
		if t.from = m.read(t.room, t.thread, rooms[t.room]); last > t.from {
			moved = append(moved, t)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pushstore: threads: %w", err)
	}
	for _, t := range moved {
		var n, h int
		err := s.db.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN highlight THEN 1 ELSE 0 END), 0) FROM push_events
			WHERE room_id = $1 AND thread_id = $2 AND event_pos > $3 AND sender <> $4`, t.room, t.thread, t.from, userID).Scan(&n, &h)
		if err != nil {
			return nil, fmt.Errorf("pushstore: unread of %s in %s: %w", userID, t.room, err)
		}
		if n > 0 {
			add(t.room, t.thread, n, h)
		}
	}

	// The user's own outcomes replace the default one of their events. No thread of a room is
	// read further back than the room's join and unthreaded read positions.
	var floor int64 = -1
	for r, start := range rooms {
		if f := max(start, m[r][AllThreads]); floor < 0 || f < floor {
			floor = f
		}
	}
	rows, err = s.db.Query(ctx, `SELECT n.room_id, n.thread_id, n.event_pos, n.notify, n.highlight,
			e.event_pos IS NOT NULL, COALESCE(e.highlight, FALSE), COALESCE(e.sender, '')
		FROM push_notifications n LEFT JOIN push_events e ON e.event_pos = n.event_pos
		WHERE n.user_id = $1 AND n.event_pos > $2 AND n.room_id IN `+jsonList(s.db, "$3"), userID, floor, roomsJSON)
	if err != nil {
		return nil, fmt.Errorf("pushstore: own notifications of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var room, thread, sender string
		var pos int64
		var notify, highlight, generic, genericHighlight bool
		if err := rows.Scan(&room, &thread, &pos, &notify, &highlight, &generic, &genericHighlight, &sender); err != nil {
			return nil, fmt.Errorf("pushstore: own notifications of %s: %w", userID, err)
		}
		if pos <= m.read(room, thread, rooms[room]) {
			continue
		}
		if generic && sender != userID {
			add(room, thread, -1, -b2i(genericHighlight))
		}
		if notify {
			add(room, thread, 1, b2i(highlight))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pushstore: own notifications of %s: %w", userID, err)
	}
	for room, threads := range out {
		for t, c := range threads {
			if c.Notifications <= 0 {
				delete(threads, t)
			}
		}
		if len(threads) == 0 {
			delete(out, room)
		}
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Notification is one notification of one user.
type Notification struct {
	EventPos  int64
	RoomID    string
	EventID   string
	ThreadID  string
	Highlight bool
	Actions   json.RawMessage
	TS        int64
	Read      bool
}

// scanBatch is how many rows a paging query reads at a time.
const scanBatch = 200

// List returns up to limit of the user's notifications in rooms (room → the position from
// which the user has been joined) before position before (0: from the newest), newest first;
// with onlyHighlight, only those that highlight (GET /notifications).
func (s *Store) List(ctx context.Context, userID string, rooms map[string]int64, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	return s.collect(ctx, userID, rooms, limit, onlyHighlight, before, true, 0)
}

// After returns up to limit of the user's notifications in rooms after position after and no
// older than since (milliseconds), oldest first: what a pusher has still to deliver.
func (s *Store) After(ctx context.Context, userID string, rooms map[string]int64, after, since int64, limit int) ([]Notification, error) {
	return s.collect(ctx, userID, rooms, limit, false, after, false, since)
}

// collect merges the events of the default outcome in rooms with the user's own notifications,
// newest first from before from (desc) or oldest first after it, reading pages of scanBatch
// rows of each.
func (s *Store) collect(ctx context.Context, userID string, rooms map[string]int64, limit int, onlyHighlight bool,
	from int64, desc bool, since int64) ([]Notification, error) {
	m, err := s.marks(ctx, userID, rooms)
	if err != nil {
		return nil, fmt.Errorf("pushstore: read positions of %s: %w", userID, err)
	}
	order := ` AND event_pos > $2 ORDER BY event_pos LIMIT $3`
	if desc {
		order = ` AND event_pos < $2 ORDER BY event_pos DESC LIMIT $3`
	}
	// The user's own rows that notify; any own row hides the event's default one below.
	var all []Notification
	for cursor := from; ; {
		rows, err := s.db.Query(ctx, `SELECT event_pos, room_id, event_id, thread_id, notify, highlight, actions, ts
			FROM push_notifications WHERE user_id = $1`+order, userID, cursor, scanBatch)
		if err != nil {
			return nil, fmt.Errorf("pushstore: notifications of %s: %w", userID, err)
		}
		n, kept := 0, 0
		for rows.Next() {
			var x Notification
			var notify bool
			var actions string
			if err := rows.Scan(&x.EventPos, &x.RoomID, &x.EventID, &x.ThreadID, &notify, &x.Highlight, &actions, &x.TS); err != nil {
				rows.Close()
				return nil, fmt.Errorf("pushstore: notifications of %s: %w", userID, err)
			}
			n++
			cursor = x.EventPos
			if notify && (!onlyHighlight || x.Highlight) && x.TS >= since {
				x.Actions = json.RawMessage(actions)
				all = append(all, x)
				kept++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if n < scanBatch || kept >= limit {
			break
		}
	}
	if len(rooms) > 0 {
		roomsJSON, err := roomList(rooms)
		if err != nil {
			return nil, err
		}
		hl := ""
		if onlyHighlight {
			hl = ` AND highlight`
		}
		found := 0
		for cursor := from; found < limit; {
			rows, err := s.db.Query(ctx, `SELECT event_pos, room_id, event_id, thread_id, highlight, actions, ts
				FROM push_events e WHERE room_id IN `+jsonList(s.db, "$4")+` AND sender <> $1`+hl+`
					AND NOT EXISTS (SELECT 1 FROM push_notifications n WHERE n.user_id = $1 AND n.event_pos = e.event_pos)`+order,
				userID, cursor, scanBatch, roomsJSON)
			if err != nil {
				return nil, fmt.Errorf("pushstore: notifications of %s: %w", userID, err)
			}
			n := 0
			for rows.Next() {
				var x Notification
				var actions string
				if err := rows.Scan(&x.EventPos, &x.RoomID, &x.EventID, &x.ThreadID, &x.Highlight, &actions, &x.TS); err != nil {
					rows.Close()
					return nil, fmt.Errorf("pushstore: notifications of %s: %w", userID, err)
				}
				n++
				cursor = x.EventPos
				if x.EventPos <= rooms[x.RoomID] || x.TS < since {
					continue
				}
				x.Actions = json.RawMessage(actions)
				all = append(all, x)
				found++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			if n < scanBatch {
				break
			}
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if desc {
			return all[i].EventPos > all[j].EventPos
		}
		return all[i].EventPos < all[j].EventPos
	})
	if len(all) > limit {
		all = all[:limit]
	}
	for i := range all {
		all[i].Read = all[i].EventPos <= m.read(all[i].RoomID, all[i].ThreadID, 0)
	}
	return all, nil
}

// NotifiedSince returns the rooms of default-outcome notifications and the users of own
// notifications after position after, and the highest position among them (after when none).
func (s *Store) NotifiedSince(ctx context.Context, after int64) (rooms, users []string, reached int64, err error) {
	reached = after
	rows, err := s.db.Query(ctx, `SELECT room_id, MAX(event_pos) FROM push_events WHERE event_pos > $1 GROUP BY room_id`, after)
	if err != nil {
		return nil, nil, after, fmt.Errorf("pushstore: notifications after %d: %w", after, err)
	}
	for rows.Next() {
		var r string
		var pos int64
		if err := rows.Scan(&r, &pos); err != nil {
			rows.Close()
			return nil, nil, after, err
		}
		rooms = append(rooms, r)
		reached = max(reached, pos)
	}
	rows.Close()
	rows, err = s.db.Query(ctx, `SELECT user_id, MAX(event_pos) FROM push_notifications WHERE event_pos > $1 AND notify GROUP BY user_id`, after)
	if err != nil {
		return nil, nil, after, fmt.Errorf("pushstore: notifications after %d: %w", after, err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var pos int64
		if err := rows.Scan(&u, &pos); err != nil {
			return nil, nil, after, err
		}
		users = append(users, u)
		reached = max(reached, pos)
	}
	return rooms, users, reached, rows.Err()
}

// LatestPos returns the highest notification position, 0 if none.
func (s *Store) LatestPos(ctx context.Context) (int64, error) {
	var a, b sql.NullInt64
	if err := s.db.QueryRow(ctx, `SELECT MAX(event_pos) FROM push_events`).Scan(&a); err != nil {
		return 0, fmt.Errorf("pushstore: latest notification: %w", err)
	}
	if err := s.db.QueryRow(ctx, `SELECT MAX(event_pos) FROM push_notifications`).Scan(&b); err != nil {
		return 0, fmt.Errorf("pushstore: latest notification: %w", err)
	}
	return max(a.Int64, b.Int64), nil
}

// PosBefore returns the highest position of a notification made before ts (milliseconds) that
// concerns the user: where a new pusher's delivery starts.
func (s *Store) PosBefore(ctx context.Context, userID string, ts int64) (int64, error) {
	var a, b sql.NullInt64
	if err := s.db.QueryRow(ctx, `SELECT MAX(event_pos) FROM push_events WHERE ts < $1`, ts).Scan(&a); err != nil {
		return 0, fmt.Errorf("pushstore: notifications before %d: %w", ts, err)
	}
	if err := s.db.QueryRow(ctx, `SELECT MAX(event_pos) FROM push_notifications WHERE user_id = $1 AND ts < $2`, userID, ts).Scan(&b); err != nil {
		return 0, fmt.Errorf("pushstore: notifications before %d: %w", ts, err)
	}
	return max(a.Int64, b.Int64), nil
}

// Cursor returns how far a pusher's delivery has reached; ok is false for a pusher that has
// none yet.
func (s *Store) Cursor(ctx context.Context, userID, appID, pushKey string) (pos int64, ok bool, err error) {
	err = s.db.QueryRow(ctx, `SELECT pos FROM push_pusher_cursors WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`,
		userID, appID, pushKey).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pushstore: cursor of pusher %s/%s: %w", appID, pushKey, err)
	}
	return pos, true, nil
}

// SetCursor records how far a pusher's delivery has reached.
func (s *Store) SetCursor(ctx context.Context, userID, appID, pushKey string, pos int64) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO push_pusher_cursors (user_id, app_id, pushkey, pos) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET pos = excluded.pos`, userID, appID, pushKey, pos)
		return err
	})
	if err != nil {
		return fmt.Errorf("pushstore: cursor of pusher %s/%s: %w", appID, pushKey, err)
	}
	return nil
}

// DeleteCursor forgets a deleted pusher's cursor.
func (s *Store) DeleteCursor(ctx context.Context, userID, appID, pushKey string) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM push_pusher_cursors WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushKey)
		return err
	})
	if err != nil {
		return fmt.Errorf("pushstore: cursor of pusher %s/%s: %w", appID, pushKey, err)
	}
	return nil
}
