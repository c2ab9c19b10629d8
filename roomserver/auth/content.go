package auth

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Event content is read through map[string]json.RawMessage or field, never tagged structs:
// struct decoding in encoding/json matches keys case-insensitively, so {"Creator": ...} would
// count as "creator", which the rules do not allow.

// object decodes raw as a JSON object, or returns nil when it is not one.
func object(raw []byte) map[string]json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// str decodes raw as a JSON string.
func str(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if inner, ok := plainString(raw); ok {
		return string(inner), true
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// field returns the raw value of member key of the JSON object raw (the last one when the key
// repeats), without decoding the rest of the object.
func field(raw []byte, key string) (json.RawMessage, bool) {
	var val []byte
	found := false
	eachMember(raw, func(k jkey, v []byte) {
		if k.equals(key) {
			val, found = v, true
		}
	})
	return val, found
}

// validUserID applies the user ID grammar events are held to (appendices, "User Identifiers"
// and "Historical User IDs"): "@", a localpart of any code points but ":" and NUL, ":", a valid
// server name, 255 bytes at most.
func validUserID(s string) bool {
	if !strings.HasPrefix(s, "@") || strings.IndexByte(s, 0) >= 0 {
		return false
	}
	_, _, err := id.UserID(s).ParseAndValidateRelaxed()
	return err == nil
}

// createInfo is what the rules read from the room's m.room.create event.
type createInfo struct {
	ev Event
	// creator is "the creator" of the membership rule for the first join and of the default
	// power levels: content.creator up to v10, the sender from v11 on.
	creator id.UserID
	// creators have infinite power level (v12 only): the sender and content.additional_creators.
	creators   []id.UserID
	infinite   bool
	noFederate bool
}

func parseCreate(ev Event) *createInfo {
	c := &createInfo{ev: ev}
	if ev == nil {
		return c
	}
	v := ev.Version()
	content := ev.Content()
	if f, ok := field(content, "m.federate"); ok && string(f) == "false" {
		c.noFederate = true
	}
	if v.CreatorInContent() {
		raw, _ := field(content, "creator")
		if s, ok := str(raw); ok {
			c.creator = id.UserID(s)
		}
	} else {
		c.creator = ev.Sender()
	}
	if v.PrivilegedRoomCreators() {
		c.infinite = true
		c.creators = append(c.creators, ev.Sender())
		var extra []json.RawMessage
		if raw, ok := field(content, "additional_creators"); ok && json.Unmarshal(raw, &extra) == nil {
			for _, e := range extra {
				if s, ok := str(e); ok && validUserID(s) && !slices.Contains(c.creators, id.UserID(s)) {
					c.creators = append(c.creators, id.UserID(s))
				}
			}
		}
	} else if c.creator != "" {
		c.creators = []id.UserID{c.creator}
	}
	return c
}

// Creators returns the room's creators: up to v10 content.creator of the create event, in v11
// its sender, from v12 its sender and content.additional_creators; nil without a create event.
func Creators(state State) []id.UserID {
	create := state.Get(typeCreate, "")
	if create == nil || !create.Version().IsKnown() {
		return nil
	}
	c := parseCreate(create)
	if len(c.creators) == 0 {
		return nil
	}
	return append([]id.UserID(nil), c.creators...)
}

// checkCreate is rule 1 of every version's text: the m.room.create event.
func (r *rules) checkCreate(ev Event) error {
	if len(ev.PrevEventIDs()) > 0 {
		return r.fail(n(1, 1), "m.room.create has prev_events")
	}
	if r.v.RoomIDIsCreateEventID() {
		// The PDU has no room_id; the room ID is derived from the event ID, so an event
		// implementation may report that derived ID — anything else came from the PDU.
		if rid := ev.RoomID(); rid != "" && rid != roomIDOfCreate(ev.EventID()) {
			return r.fail(n(1, 2), "m.room.create has a room_id")
		}
	} else {
		rs, ss := serverOf(string(ev.RoomID())), serverOf(string(ev.Sender()))
		if rs == "" || rs != ss {
			return r.fail(n(1, 2), "room ID %s is not on the sender's server %q", ev.RoomID(), ss)
		}
	}
	content := object(ev.Content())
	if raw, ok := content["room_version"]; ok {
		s, isStr := str(raw)
		if !isStr || s == "" || !id.RoomVersion(s).IsKnown() {
			return r.fail(n(1, 3), "content.room_version %s is not a recognised room version", raw)
		}
	}
	if r.v.CreatorInContent() {
		if _, ok := content["creator"]; !ok {
			return r.fail(n(1, 4), "content has no creator")
		}
	}
	if r.v.PrivilegedRoomCreators() {
		if raw, ok := content["additional_creators"]; ok {
			var list []json.RawMessage
			if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' || json.Unmarshal(t, &list) != nil {
				return r.fail(n(1, 4), "content.additional_creators is not an array")
			}
			for _, e := range list {
				if s, ok := str(e); !ok || !validUserID(s) {
					return r.fail(n(1, 4), "content.additional_creators holds %s, not a valid user ID", e)
				}
			}
		}
	}
	return nil
}

// membershipOf returns the user's current membership in state: content.membership of their
// m.room.member event, "leave" without one, "" when the event has no string membership.
func membershipOf(state State, user id.UserID) string {
	ev := state.Get(typeMember, string(user))
	if ev == nil {
		return membershipLeave
	}
	raw, _ := field(ev.Content(), "membership")
	s, _ := str(raw)
	return s
}

// Membership returns the user's membership in state ("leave" when they have no member event).
func Membership(state State, user id.UserID) string {
	return membershipOf(state, user)
}

// AllowCondition is one entry of content.allow of m.room.join_rules.
type AllowCondition struct {
	Type   string    `json:"type"`
	RoomID id.RoomID `json:"room_id,omitempty"`
}

// JoinRules is the parsed content of an m.room.join_rules event.
type JoinRules struct {
	// Rule is content.join_rule; "invite" when there is no event or no join_rule, "" when it is
	// not a string.
	Rule string
	// Allow holds the well-formed conditions of content.allow (restricted rooms); malformed
	// entries are dropped, which leaves the room effectively invite-only.
	Allow []AllowCondition
}

// LoadJoinRules returns the join rules in state.
//
// The spec gives no join rule for a room without one; like the absence of an invite, this is
// taken as "invite", so that members of such a room can still update their membership.
func LoadJoinRules(state State) JoinRules {
	ev := state.Get(typeJoinRules, "")
	if ev == nil {
		return JoinRules{Rule: joinRuleInvite}
	}
	content := object(ev.Content())
	jr := JoinRules{}
	if raw, ok := content["join_rule"]; !ok {
		jr.Rule = joinRuleInvite
	} else {
		jr.Rule, _ = str(raw)
	}
	var allow []json.RawMessage
	if json.Unmarshal(content["allow"], &allow) == nil {
		for _, a := range allow {
			o := object(a)
			typ, ok := str(o["type"])
			if !ok {
				continue
			}
			cond := AllowCondition{Type: typ}
			if typ == "m.room_membership" {
				rid, ok := str(o["room_id"])
				if !ok || !strings.HasPrefix(rid, "!") {
					continue
				}
				cond.RoomID = id.RoomID(rid)
			}
			jr.Allow = append(jr.Allow, cond)
		}
	}
	return jr
}
