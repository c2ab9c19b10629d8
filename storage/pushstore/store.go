// Package pushstore keeps the users' notifications (client-server API, "Push Notifications"):
// one row for each event whose push rules told a user to be notified, whether it has been read,
// and where each pusher's delivery to its gateway has reached.
//
// Rows are written by the sync component's consumer in the transaction that stores the events,
// so the counts of /sync always match its timelines; a notification's position is its event's
// position on the roomserver's output stream, which is unique per event and so per user.
package pushstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "notifications, pusher cursors",
	// thread_id is "" for the main timeline. actions is the matched rule's actions as JSON.
	SQL: `CREATE TABLE push_notifications (
		user_id   TEXT    NOT NULL,
		event_pos BIGINT  NOT NULL,
		room_id   TEXT    NOT NULL,
		event_id  TEXT    NOT NULL,
		thread_id TEXT    NOT NULL,
		highlight BOOLEAN NOT NULL,
		actions   TEXT    NOT NULL,
		ts        BIGINT  NOT NULL,
		read      BOOLEAN NOT NULL,
		PRIMARY KEY (user_id, event_pos)
	);
	CREATE INDEX push_notifications_unread ON push_notifications (user_id, room_id, event_pos) WHERE NOT read;
	CREATE INDEX push_notifications_pos ON push_notifications (event_pos);
	CREATE TABLE push_pusher_cursors (
		user_id TEXT   NOT NULL,
		app_id  TEXT   NOT NULL,
		pushkey TEXT   NOT NULL,
		pos     BIGINT NOT NULL,
		PRIMARY KEY (user_id, app_id, pushkey)
	);`,
}}

// Store is the notification tables on one database.
type Store struct{ db *storage.DB }

// Open migrates the tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "pushstore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Batch is the notifications of one event for users who share an outcome.
type Batch struct {
	Users     []string
	EventPos  int64
	RoomID    string
	EventID   string
	ThreadID  string
	Highlight bool
	Actions   json.RawMessage
	TS        int64
}

// jsonList is the SQL that reads the JSON array parameter n as rows of text values.
func jsonList(db storage.Querier, n string) string {
	if db.Engine() == storage.EnginePostgres {
		return `(SELECT jsonb_array_elements_text(` + n + `::jsonb) AS value)`
	}
	return `(SELECT value FROM json_each(` + n + `))`
}

// Insert writes a batch in one statement, whatever the number of users: the user IDs travel as
// one JSON array (WHERE TRUE keeps SQLite from reading ON CONFLICT as a join clause). A repeated batch (a consumer retrying after a failed commit) changes nothing.
func (s *Store) Insert(ctx context.Context, tx *storage.Tx, b Batch) error {
	if len(b.Users) == 0 {
		return nil
	}
	users, err := json.Marshal(b.Users)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO push_notifications (user_id, event_pos, room_id, event_id, thread_id, highlight, actions, ts, read)
		SELECT u.value, $2, $3, $4, $5, $6, $7, $8, FALSE FROM `+jsonList(tx, "$1")+` u
		WHERE TRUE ON CONFLICT (user_id, event_pos) DO NOTHING`,
		string(users), b.EventPos, b.RoomID, b.EventID, b.ThreadID, b.Highlight, string(b.Actions), b.TS)
	if err != nil {
		return fmt.Errorf("pushstore: notifications of %s: %w", b.EventID, err)
	}
	return nil
}

// AllThreads, given as MarkRead's thread, marks every thread read (an unthreaded receipt).
const AllThreads = "\x00all"

// MarkRead marks the user's unread notifications in the room up to and including event
// position upTo read, in one thread ("" for the main timeline) or in AllThreads.
func (s *Store) MarkRead(ctx context.Context, tx *storage.Tx, userID, roomID, thread string, upTo int64) error {
	q := `UPDATE push_notifications SET read = TRUE WHERE user_id = $1 AND room_id = $2 AND NOT read AND event_pos <= $3`
	args := []any{userID, roomID, upTo}
	if thread != AllThreads {
		q += ` AND thread_id = $4`
		args = append(args, thread)
	}
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("pushstore: mark read for %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// Counts is the number of unread notifications of one room and thread, and how many of them
// highlight.
type Counts struct {
	Notifications int
	Highlights    int
}

// Unread returns the user's unread counts in the rooms, by room and thread; rooms and threads
// without unread notifications are absent.
func (s *Store) Unread(ctx context.Context, userID string, rooms []string) (map[string]map[string]Counts, error) {
	out := map[string]map[string]Counts{}
	if len(rooms) == 0 {
		return out, nil
	}
	list, err := json.Marshal(rooms)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT room_id, thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END)
		FROM push_notifications WHERE user_id = $1 AND NOT read AND room_id IN `+jsonList(s.db, "$2")+`
		GROUP BY room_id, thread_id`, userID, string(list))
	if err != nil {
		return nil, fmt.Errorf("pushstore: unread counts of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var room, thread string
		var c Counts
		if err := rows.Scan(&room, &thread, &c.Notifications, &c.Highlights); err != nil {
			return nil, fmt.Errorf("pushstore: unread counts of %s: %w", userID, err)
		}
		if out[room] == nil {
			out[room] = map[string]Counts{}
		}
		out[room][thread] = c
	}
	return out, rows.Err()
}

// UnreadTotal returns the number of the user's unread notifications in all rooms (the badge
// count sent to push gateways).
func (s *Store) UnreadTotal(ctx context.Context, userID string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM push_notifications WHERE user_id = $1 AND NOT read`, userID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pushstore: unread total of %s: %w", userID, err)
	}
	return n, nil
}

// Notification is one stored notification.
type Notification struct {
	UserID    string
	EventPos  int64
	RoomID    string
	EventID   string
	ThreadID  string
	Highlight bool
	Actions   json.RawMessage
	TS        int64
	Read      bool
}

const columns = `user_id, event_pos, room_id, event_id, thread_id, highlight, actions, ts, read`

func scan(rows *sql.Rows) ([]Notification, error) {
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var actions string
		if err := rows.Scan(&n.UserID, &n.EventPos, &n.RoomID, &n.EventID, &n.ThreadID, &n.Highlight, &actions, &n.TS, &n.Read); err != nil {
			return nil, err
		}
		n.Actions = json.RawMessage(actions)
		out = append(out, n)
	}
	return out, rows.Err()
}

// List returns up to limit of the user's notifications before position before (0: from the
// newest), newest first; with onlyHighlight, only those that highlight (GET /notifications).
func (s *Store) List(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	q := `SELECT ` + columns + ` FROM push_notifications WHERE user_id = $1 AND event_pos < $2`
	if onlyHighlight {
		q += ` AND highlight`
	}
	q += ` ORDER BY event_pos DESC LIMIT $3`
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.Query(ctx, q, userID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("pushstore: notifications of %s: %w", userID, err)
	}
	ns, err := scan(rows)
	if err != nil {
		return nil, fmt.Errorf("pushstore: notifications of %s: %w", userID, err)
	}
	return ns, nil
}

// After returns up to limit of the user's notifications after position after with a timestamp
// of at least since, oldest first: what a pusher has still to deliver.
func (s *Store) After(ctx context.Context, userID string, after, since int64, limit int) ([]Notification, error) {
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM push_notifications
		WHERE user_id = $1 AND event_pos > $2 AND ts >= $3 ORDER BY event_pos LIMIT $4`, userID, after, since, limit)
	if err != nil {
		return nil, fmt.Errorf("pushstore: notifications of %s after %d: %w", userID, after, err)
	}
	ns, err := scan(rows)
	if err != nil {
		return nil, fmt.Errorf("pushstore: notifications of %s after %d: %w", userID, after, err)
	}
	return ns, nil
}

// UsersAfter returns the users with notifications after position after, and the highest
// position among them (after when there are none).
func (s *Store) UsersAfter(ctx context.Context, after int64) ([]string, int64, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id, MAX(event_pos) FROM push_notifications WHERE event_pos > $1 GROUP BY user_id`, after)
	if err != nil {
		return nil, after, fmt.Errorf("pushstore: notified users after %d: %w", after, err)
	}
	defer rows.Close()
	var users []string
	reached := after
	for rows.Next() {
		var u string
		var pos int64
		if err := rows.Scan(&u, &pos); err != nil {
			return nil, after, fmt.Errorf("pushstore: notified users after %d: %w", after, err)
		}
		users = append(users, u)
		reached = max(reached, pos)
	}
	return users, reached, rows.Err()
}

// LatestPos returns the highest notification position of all users, 0 if none.
func (s *Store) LatestPos(ctx context.Context) (int64, error) {
	var pos sql.NullInt64
	if err := s.db.QueryRow(ctx, `SELECT MAX(event_pos) FROM push_notifications`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("pushstore: latest notification: %w", err)
	}
	return pos.Int64, nil
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
