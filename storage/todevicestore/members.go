package todevicestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

// MemberChange says whether a user is joined to a room from a device_lists position on.
type MemberChange struct {
	RoomID string
	UserID string
	Joined bool
	Pos    int64 // filled in by the store
}

// RoomChanges is what one batch of the roomserver's output stream changed for device lists.
type RoomChanges struct {
	// Members are the batch's memberships in event order; only those that change whether the
	// user is joined are recorded.
	Members []MemberChange
	// Encrypted are the rooms that received an m.room.encryption state event.
	Encrypted []string
}

// ApplyRooms records a batch's membership changes and rooms becoming encrypted at one new
// device_lists position and moves the named cursor to outputPos, in one transaction. It returns
// that position (0 when the batch changed nothing for device lists), the memberships recorded
// and the rooms newly encrypted.
func (s *Store) ApplyRooms(ctx context.Context, rc RoomChanges, cursor string, outputPos int64) (pos int64, members []MemberChange, encrypted []string, err error) {
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		pos, members, encrypted = 0, nil, nil
		type key struct{ room, user string }
		final := map[key]bool{}
		var order []key
		for _, m := range rc.Members {
			k := key{m.RoomID, m.UserID}
			if _, seen := final[k]; !seen {
				order = append(order, k)
			}
			final[k] = m.Joined
		}
		for _, k := range order {
			was, err := joinedNow(ctx, tx, k.room, k.user)
			if err != nil {
				return err
			}
			if was != final[k] {
				members = append(members, MemberChange{RoomID: k.room, UserID: k.user, Joined: final[k]})
			}
		}
		seenRoom := map[string]bool{}
		for _, room := range rc.Encrypted {
			if seenRoom[room] {
				continue
			}
			seenRoom[room] = true
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM devicelist_encrypted WHERE room_id = $1`, room).Scan(&n); err != nil {
				return fmt.Errorf("encryption of %s: %w", room, err)
			}
			if n == 0 {
				encrypted = append(encrypted, room)
			}
		}
		if len(members) > 0 || len(encrypted) > 0 {
			// Drawn late: userapi's device changes wait on this stream's counter until the commit.
			var err error
			if pos, err = tx.NextStreamPosition(ctx, synctypes.StreamDeviceLists); err != nil {
				return err
			}
		}
		for i := range members {
			members[i].Pos = pos
			m := members[i]
			_, err := tx.Exec(ctx, `INSERT INTO devicelist_members (room_id, user_id, joined, pos) VALUES ($1, $2, $3, $4)
				ON CONFLICT (room_id, user_id) DO UPDATE SET joined = excluded.joined, pos = excluded.pos`,
				m.RoomID, m.UserID, m.Joined, pos)
			if err != nil {
				return fmt.Errorf("record membership of %s in %s: %w", m.UserID, m.RoomID, err)
			}
		}
		for _, room := range encrypted {
			if _, err := tx.Exec(ctx, `INSERT INTO devicelist_encrypted (room_id, pos) VALUES ($1, $2)`, room, pos); err != nil {
				return fmt.Errorf("record encryption of %s: %w", room, err)
			}
		}
		return setCursor(ctx, tx, cursor, outputPos)
	})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("todevicestore: apply room changes up to %d: %w", outputPos, err)
	}
	return pos, members, encrypted, nil
}

func joinedNow(ctx context.Context, q storage.Querier, room, user string) (bool, error) {
	var joined bool
	err := q.QueryRow(ctx, `SELECT joined FROM devicelist_members WHERE room_id = $1 AND user_id = $2`, room, user).Scan(&joined)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("membership of %s in %s: %w", user, room, err)
	}
	return joined, nil
}

// MemberChanges returns the membership changes with device_lists positions in (from, to] in the
// rooms that user has ever been a member of, the user's own included. A pair that changed more
// than once reads as its latest change.
func (s *Store) MemberChanges(ctx context.Context, user string, from, to int64) ([]MemberChange, error) {
	rows, err := s.db.Query(ctx, `SELECT m.room_id, m.user_id, m.joined, m.pos FROM devicelist_members m
		WHERE m.pos > $1 AND m.pos <= $2 AND m.room_id IN (SELECT room_id FROM devicelist_members WHERE user_id = $3)
		ORDER BY m.pos, m.room_id, m.user_id`, from, to, user)
	if err != nil {
		return nil, fmt.Errorf("todevicestore: membership changes for %s: %w", user, err)
	}
	defer rows.Close()
	var out []MemberChange
	for rows.Next() {
		var m MemberChange
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Joined, &m.Pos); err != nil {
			return nil, fmt.Errorf("todevicestore: membership changes for %s: %w", user, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("todevicestore: membership changes for %s: %w", user, err)
	}
	return out, nil
}

// EncryptedBetween returns the rooms that user has ever been a member of which became encrypted
// at device_lists positions in (from, to].
func (s *Store) EncryptedBetween(ctx context.Context, user string, from, to int64) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT e.room_id FROM devicelist_encrypted e
		JOIN devicelist_members m ON m.room_id = e.room_id AND m.user_id = $3
		WHERE e.pos > $1 AND e.pos <= $2 ORDER BY e.room_id`, from, to, user)
	if err != nil {
		return nil, fmt.Errorf("todevicestore: rooms encrypted for %s: %w", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var room string
		if err := rows.Scan(&room); err != nil {
			return nil, fmt.Errorf("todevicestore: rooms encrypted for %s: %w", user, err)
		}
		out = append(out, room)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("todevicestore: rooms encrypted for %s: %w", user, err)
	}
	return out, nil
}
