package searchstore

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/latticehq/lattice/storage"
)

// maxProfileWords bounds the words a profile is found by, as a display name may be as long as
// an event allows.
const maxProfileWords = 32

// SetJoined records whether a user is joined to a room, for the user directory.
func (s *Store) SetJoined(ctx context.Context, tx *storage.Tx, roomID, userID string, joined bool) error {
	var err error
	if joined {
		_, err = tx.Exec(ctx, `INSERT INTO dir_members (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, roomID, userID)
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM dir_members WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	}
	if err != nil {
		return fmt.Errorf("searchstore: membership of %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// DirUser is one user of the directory, with the profile of their latest join.
type DirUser struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// localpart returns the part of a user ID between "@" and the first ":".
func localpart(userID string) string {
	l, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return l
}

// SetProfile stores a user's directory profile and the words it is found by: those of the
// localpart and of the display name.
func (s *Store) SetProfile(ctx context.Context, tx *storage.Tx, u DirUser, local bool) error {
	name := clean(u.DisplayName)
	_, err := tx.Exec(ctx, `INSERT INTO dir_users (user_id, display_name, avatar_url, name_key, local_key, local)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,
		avatar_url = excluded.avatar_url, name_key = excluded.name_key, local_key = excluded.local_key`,
		u.UserID, name, clean(u.AvatarURL), strings.ToLower(name), strings.ToLower(localpart(u.UserID)), boolInt(local))
	if err == nil {
		_, err = tx.Exec(ctx, `DELETE FROM dir_words WHERE user_id = $1`, u.UserID)
	}
	seen := map[string]bool{}
	words := append(Words(localpart(u.UserID)), Words(name)...)
	for _, w := range words[:min(len(words), maxProfileWords)] {
		if err != nil {
			break
		}
		if !seen[w] {
			seen[w] = true
			_, err = tx.Exec(ctx, `INSERT INTO dir_words (word, user_id) VALUES ($1, $2)`, w, u.UserID)
		}
	}
	if err != nil {
		return fmt.Errorf("searchstore: profile of %s: %w", u.UserID, err)
	}
	return nil
}

// DirQuery is a user directory search.
type DirQuery struct {
	// Searcher sees the users they share a room with and the members of public rooms: join
	// rule public, history world_readable, or in Published (the room directory).
	Searcher  string
	Published []string
	// AllLocal makes every local user the directory knows visible too.
	AllLocal bool
	// Words must each be the prefix of a word of the user's localpart or display name.
	Words []string
	// Term, lower-cased, ranks users whose display name or localpart is exactly it first.
	Term  string
	Limit int
}

// SearchUsers returns up to q.Limit users matching q: exact matches first, then users with a
// display name, then by user ID.
func (s *Store) SearchUsers(ctx context.Context, q DirQuery) ([]DirUser, error) {
	if len(q.Words) == 0 || q.Limit <= 0 {
		return nil, nil
	}
	b := &builder{engine: s.db.Engine()}
	for _, w := range q.Words {
		// A byte-wise prefix range, which both engines answer from dir_words' key; no valid
		// UTF-8 continuation of w sorts at or above w followed by the highest code point.
		b.where = append(b.where, "u.user_id IN (SELECT user_id FROM dir_words WHERE word >= "+b.arg(w)+
			" AND word < "+b.arg(w+string(utf8.MaxRune))+")")
	}
	me := b.arg(q.Searcher)
	// The searcher finds themself only as a member of a public room, as others would: sharing
	// a private room with oneself does not count.
	visible := `EXISTS (SELECT 1 FROM dir_members m WHERE m.user_id = u.user_id AND (
		(m.room_id IN (SELECT room_id FROM dir_members WHERE user_id = ` + me + `) AND u.user_id <> ` + b.arg(q.Searcher) + `)
		OR m.room_id IN (SELECT room_id FROM search_rooms WHERE join_rule = 'public' OR visibility = 'world_readable')`
	if len(q.Published) > 0 {
		visible += "\n\t\tOR m.room_id IN " + b.list(q.Published)
	}
	visible += "))"
	if q.AllLocal {
		visible = "(u.local = 1 OR " + visible + ")"
	}
	b.where = append(b.where, visible)
	term := b.arg(q.Term)
	query := `SELECT u.user_id, u.display_name, u.avatar_url FROM dir_users u WHERE ` + strings.Join(b.where, " AND ") +
		` ORDER BY CASE WHEN ` + term + ` <> '' AND (u.name_key = ` + term + ` OR u.local_key = ` + term + `) THEN 0 ELSE 1 END,
		CASE WHEN u.display_name <> '' THEN 0 ELSE 1 END, u.user_id LIMIT ` + b.arg(q.Limit)
	rows, err := s.db.Query(ctx, query, b.args...)
	if err != nil {
		return nil, fmt.Errorf("searchstore: search users: %w", err)
	}
	defer rows.Close()
	var out []DirUser
	for rows.Next() {
		var u DirUser
		if err := rows.Scan(&u.UserID, &u.DisplayName, &u.AvatarURL); err != nil {
			return nil, fmt.Errorf("searchstore: search users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// KnownUsers returns which of userIDs the directory holds a profile of.
func (s *Store) KnownUsers(ctx context.Context, userIDs []string) (map[string]bool, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	b := &builder{engine: s.db.Engine()}
	rows, err := s.db.Query(ctx, `SELECT user_id FROM dir_users WHERE user_id IN `+b.list(userIDs), b.args...)
	if err != nil {
		return nil, fmt.Errorf("searchstore: known users: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("searchstore: known users: %w", err)
		}
		out[u] = true
	}
	return out, rows.Err()
}
