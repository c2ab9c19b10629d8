package userapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// IgnoredUserListType is the global account data type that lists the users a user ignores
// (client-server API, "Ignoring Users").
const IgnoredUserListType = "m.ignored_user_list"

// ignoreIndex answers, for the push component, who ignores a sender: it is asked for every new
// event, so it is kept in memory, read once at New and changed with every write of the list
// through SetAccountData (the only writer of account data).
//
// Lock order: mu is a leaf lock.
type ignoreIndex struct {
	mu sync.RWMutex
	by map[id.UserID]map[id.UserID]struct{} // ignored user → the users who ignore them
	of map[id.UserID][]id.UserID            // user → the users they ignore
}

func loadIgnores(ctx context.Context, q storage.Querier) (*ignoreIndex, error) {
	ix := &ignoreIndex{by: map[id.UserID]map[id.UserID]struct{}{}, of: map[id.UserID][]id.UserID{}}
	rows, err := q.Query(ctx, `SELECT user_id, content FROM account_data WHERE room_id = '' AND type = $1`, IgnoredUserListType)
	if err != nil {
		return nil, fmt.Errorf("ignored user lists: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user id.UserID
		var content string
		if err := rows.Scan(&user, &content); err != nil {
			return nil, fmt.Errorf("ignored user lists: %w", err)
		}
		ix.set(user, json.RawMessage(content))
	}
	return ix, rows.Err()
}

// set replaces user's list with the one in content (ignored_users' keys).
func (ix *ignoreIndex) set(user id.UserID, content json.RawMessage) {
	var c struct {
		IgnoredUsers map[id.UserID]json.RawMessage `json:"ignored_users"`
	}
	json.Unmarshal(content, &c)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, old := range ix.of[user] {
		delete(ix.by[old], user)
		if len(ix.by[old]) == 0 {
			delete(ix.by, old)
		}
	}
	delete(ix.of, user)
	for ignored := range c.IgnoredUsers {
		if ix.by[ignored] == nil {
			ix.by[ignored] = map[id.UserID]struct{}{}
		}
		ix.by[ignored][user] = struct{}{}
		ix.of[user] = append(ix.of[user], ignored)
	}
}

// IgnoredBy returns the local users who ignore sender.
func (u *Users) IgnoredBy(ctx context.Context, sender id.UserID) (map[id.UserID]bool, error) {
	u.ignores.mu.RLock()
	defer u.ignores.mu.RUnlock()
	set := u.ignores.by[sender]
	if len(set) == 0 {
		return nil, nil
	}
	out := make(map[id.UserID]bool, len(set))
	for user := range set {
		out[user] = true
	}
	return out, nil
}
