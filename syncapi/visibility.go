package syncapi

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/latticehq/lattice/storage/syncstore"
)

// viewer decides which events of one room a user may see, from the user's membership history
// there (client-server API, "History visibility").
type viewer struct {
	user string
	hist []syncstore.Membership // oldest first
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
