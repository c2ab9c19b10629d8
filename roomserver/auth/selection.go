package auth

import (
	"slices"
)

// Selection returns the state the auth rules consult for ev ("Auth events selection",
// server-server API), in a fixed order: the create event (not from v12, where the room ID
// names it), the power levels, the sender's membership and, for m.room.member events, the
// target's membership, the join rules (join, invite, knock), the m.room.third_party_invite the
// invite redeems and the authorising user's membership of a restricted join (v8+). The create
// event itself selects nothing, and so does an event of an unknown room version.
func Selection(ev Event) []StateKey {
	v := ev.Version()
	if ev.Type() == typeCreate || !v.IsKnown() {
		return nil
	}
	keys := make([]StateKey, 0, 6)
	add := func(k StateKey) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	if !v.RoomIDIsCreateEventID() {
		add(StateKey{typeCreate, ""})
	}
	add(StateKey{typePowerLevels, ""})
	add(StateKey{typeMember, string(ev.Sender())})
	sk := ev.StateKey()
	if ev.Type() != typeMember || sk == nil {
		return keys
	}
	add(StateKey{typeMember, *sk})
	content := object(ev.Content())
	membership, _ := str(content["membership"])
	switch membership {
	case membershipJoin, membershipInvite, membershipKnock:
		add(StateKey{typeJoinRules, ""})
	}
	if membership == membershipInvite {
		if tpi, ok := content[keyThirdPartyInvite]; ok {
			if token, ok := str(object(object(tpi)["signed"])["token"]); ok {
				add(StateKey{typeThirdPartyInvite, token})
			}
		}
	}
	if membership == membershipJoin && v.RestrictedJoins() {
		if via, ok := str(content[keyJoinAuthorisedVia]); ok {
			add(StateKey{typeMember, via})
		}
	}
	return keys
}

// CheckAuthEvents applies the rules about ev's own auth_events (rule 2 of the v1–v11 texts, 3 of
// v12): no two entries for one (type, state_key), none the selection does not allow, an
// m.room.create entry (up to v11; v12 forbids one) and the room ID of ev on every entry.
// authEvents are the events ev.AuthEventIDs() name, in any order; that none is missing or was
// rejected (sub-rule 3) is for the caller to ensure.
func CheckAuthEvents(ev Event, authEvents []Event) error {
	v := ev.Version()
	if err := checkVersion(v); err != nil {
		return err
	}
	if ev.Type() == typeCreate {
		return nil // rule 1 allows or rejects the create event before auth_events are considered
	}
	r := newRules(v)
	a := r.authEvents
	seen := make([]StateKey, 0, len(authEvents))
	for _, ae := range authEvents {
		sk := ae.StateKey()
		if sk == nil {
			return r.fail(n(a, 2), "auth event %s is not a state event", ae.EventID())
		}
		k := StateKey{ae.Type(), *sk}
		if slices.Contains(seen, k) {
			return r.fail(n(a, 1), "two auth events for (%s, %q)", k.Type, k.StateKey)
		}
		seen = append(seen, k)
	}
	allowed := Selection(ev)
	hasCreate := false
	for _, k := range seen {
		if k.Type == typeCreate && k.StateKey == "" {
			hasCreate = true
			if v.RoomIDIsCreateEventID() {
				return r.fail(n(a, 2), "m.room.create must not be among the auth events")
			}
		}
		if !slices.Contains(allowed, k) {
			return r.fail(n(a, 2), "auth event (%s, %q) is not one the selection allows", k.Type, k.StateKey)
		}
	}
	if !v.RoomIDIsCreateEventID() && !hasCreate {
		return r.fail(n(a, 4), "no m.room.create among the auth events")
	}
	for _, ae := range authEvents {
		if ae.RoomID() != ev.RoomID() {
			return r.fail(n(a, 5), "auth event %s is in room %s, not %s", ae.EventID(), ae.RoomID(), ev.RoomID())
		}
	}
	return nil
}

// RequiredSigners returns the servers whose signatures ev must carry beyond what the signature
// checks already demand of every event: the server of content.join_authorised_via_users_server
// on v8+ m.room.member events (rule 4.2 of the v8 text, "validly signed by the homeserver of the
// user ID denoted by the key"). The sender's server and, in v1–v2, the event ID's server are
// required by "Validating hashes and signatures on received events" and are not repeated here.
func RequiredSigners(ev Event) []string {
	if ev.Type() != typeMember || !ev.Version().RestrictedJoins() {
		return nil
	}
	via, ok := str(object(ev.Content())[keyJoinAuthorisedVia])
	if !ok || !validUserID(via) {
		return nil
	}
	return []string{serverOf(via)}
}
