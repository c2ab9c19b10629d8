package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/userapi"
)

// viewer decides which events of one room a user may see, from the user's membership history
// there (client-server API, "History visibility").
type viewer struct {
	user    string
	hist    []syncstore.Membership // oldest first
	ignored map[string]bool        // senders whose non-state events the user does not see
}

func (a *API) viewerOf(ctx context.Context, roomID, user string) (*viewer, error) {
	hist, err := a.store.Memberships(ctx, a.db, roomID, user)
	if err != nil {
		return nil, err
	}
	return &viewer{user: user, hist: hist}, nil
}

// membershipAt is the user's membership just before e was sent.
func (v *viewer) membershipAt(e *syncstore.Event) string {
	m := "leave"
	for _, h := range v.hist {
		if h.Pos >= e.Pos {
			break
		}
		m = h.Membership
	}
	return m
}

// canSee carries out the spec's algorithm: world_readable, or joined at the event, or shared
// history and joined at some point since, or invited at the event when history is invited.
func (v *viewer) canSee(e *syncstore.Event) bool {
	// State events of ignored users still show, so that the room looks the same to everyone
	// (client-server API, "Ignoring Users").
	if e.StateKey == nil && v.ignored[e.Sender] {
		return false
	}
	// Events that set the user's own membership always concern them: without their leave,
	// kick or ban a client could not tell why the room went away.
	if e.Visibility == "world_readable" || (e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == v.user) {
		return true
	}
	m := v.membershipAt(e)
	if m == "join" {
		return true
	}
	switch e.Visibility {
	case "shared":
		for _, h := range v.hist {
			if h.Pos >= e.Pos && h.Membership == "join" {
				return true
			}
		}
	case "invited":
		return m == "invite"
	}
	return false
}

// everMember reports whether the user was ever joined or invited.
func (v *viewer) everMember() bool {
	for _, h := range v.hist {
		if h.Membership == "join" || h.Membership == "invite" {
			return true
		}
	}
	return false
}

// render returns a stored event in the client format with the unsigned data the server adds
// for this device: age, transaction_id for the sender's own device, redacted_because.
func render(e *syncstore.Event, deviceUser, deviceID string, now int64, extra string) []byte {
	var u strings.Builder
	u.WriteString(`"age":`)
	u.WriteString(strconv.FormatInt(max(now-e.OriginServerTS, 0), 10))
	if e.TxnID != "" && e.TxnDevice == deviceID && e.Sender == deviceUser {
		u.WriteString(`,"transaction_id":`)
		txn, _ := json.Marshal(e.TxnID)
		u.Write(txn)
	}
	if e.RedactedBecause != nil {
		u.WriteString(`,"redacted_because":`)
		u.Write(e.RedactedBecause)
	}
	if extra != "" {
		u.WriteByte(',')
		u.WriteString(extra)
	}
	js := e.JSON
	out := make([]byte, 0, len(js)+u.Len()+16)
	out = append(out, js[:len(js)-1]...)
	out = append(out, `,"unsigned":{`...)
	out = append(out, u.String()...)
	out = append(out, "}}"...)
	return out
}

// ignoredUsers returns the users in a user's m.ignored_user_list account data.
func (a *API) ignoredUsers(ctx context.Context, user id.UserID) (map[string]bool, error) {
	raw, err := a.users.GetAccountData(ctx, user, "", "m.ignored_user_list")
	if errors.Is(err, userapi.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("ignored users of %s: %w", user, err)
	}
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal(raw, &c) != nil || len(c.IgnoredUsers) == 0 {
		return nil, nil
	}
	out := make(map[string]bool, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		out[u] = true
	}
	return out, nil
}
