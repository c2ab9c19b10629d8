// Package auth carries out the authorisation rules of Matrix room versions 1 to 12 (each room
// version page, "Authorisation rules") and the auth event selection of the server-server API
// ("Checks performed on receipt of a PDU", "Auth events selection").
//
// The pipeline that receives an event calls CheckAuthEvents once with the event's own auth
// events, then Check three times: against the auth events (fail: reject), against the state
// before the event (fail: reject) and against the current state of the room (fail: soft-fail).
//
// Not covered here, because they need keys or storage: event signatures (including the
// signature of the server of content.join_authorised_via_users_server, see RequiredSigners),
// whether auth events were themselves rejected, and, in room version 12, whether the create
// event the room ID names was accepted.
//
// Where the spec is silent: a room without an m.room.join_rules event (or whose event lacks
// join_rule) is treated as invite-only; an m.room.power_levels event without "users" is
// valid (only a present "users" that is not an object of user IDs to levels is rejected).
//
// Power level events can be large. Check reads only the users it needs by scanning the
// event's JSON; a State that also implements CachedPowerLevels skips even that.
package auth

import (
	"encoding/json"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Event is the read-only view of a PDU the authorisation rules need.
type Event interface {
	EventID() id.EventID
	RoomID() id.RoomID
	Type() string
	StateKey() *string // nil for non-state events
	Sender() id.UserID
	Content() json.RawMessage
	PrevEventIDs() []id.EventID
	AuthEventIDs() []id.EventID
	Depth() int64
	OriginServerTS() int64
	Redacts() id.EventID // already taken from content for v11+
	Version() id.RoomVersion
}

// StateKey identifies one piece of room state.
type StateKey struct{ Type, StateKey string }

// State gives the rules the state they consult (the event's auth events, or the room state
// before it).
//
// In room version 12 the create event is never among an event's auth events, but the rules still
// consult it: Get("m.room.create", "") must return the create event the room ID names.
type State interface {
	Get(typ, stateKey string) Event // nil when absent
}

// StateMap is a State backed by a map.
type StateMap map[StateKey]Event

// Get returns the event at (typ, stateKey), or nil.
func (m StateMap) Get(typ, stateKey string) Event {
	if ev, ok := m[StateKey{typ, stateKey}]; ok {
		return ev
	}
	return nil
}

// NewStateMap builds a StateMap from state events (message events are skipped, later events win).
func NewStateMap(events ...Event) StateMap {
	m := make(StateMap, len(events))
	for _, ev := range events {
		if ev == nil {
			continue
		}
		if sk := ev.StateKey(); sk != nil {
			m[StateKey{ev.Type(), *sk}] = ev
		}
	}
	return m
}

// Error is an authorisation failure: the event breaks the named rule of its room version.
type Error struct {
	Version id.RoomVersion // the room version whose text the rule number refers to
	Rule    string         // the rule's number in that text, e.g. "4.3.2"
	Reason  string
}

// Error formats the failure as "auth rule 4.3.2 (v10): reason".
func (e *Error) Error() string {
	return fmt.Sprintf("auth rule %s (%s): %s", e.Rule, versionLabel(e.Version), e.Reason)
}

func versionLabel(v id.RoomVersion) string {
	if v == id.RoomV0 {
		return "v1"
	}
	return "v" + string(v)
}

// Event types the rules speak of.
const (
	typeCreate            = "m.room.create"
	typeMember            = "m.room.member"
	typeJoinRules         = "m.room.join_rules"
	typePowerLevels       = "m.room.power_levels"
	typeThirdPartyInvite  = "m.room.third_party_invite"
	typeAliases           = "m.room.aliases"
	typeRedaction         = "m.room.redaction"
	keyJoinAuthorisedVia  = "join_authorised_via_users_server"
	keyThirdPartyInvite   = "third_party_invite"
	membershipJoin        = "join"
	membershipInvite      = "invite"
	membershipLeave       = "leave"
	membershipBan         = "ban"
	membershipKnock       = "knock"
	joinRulePublic        = "public"
	joinRuleInvite        = "invite"
	joinRuleKnock         = "knock"
	joinRuleRestricted    = "restricted"
	joinRuleKnockRestrict = "knock_restricted"
)

// rules numbers the authorisation rules of one room version, since the same rule has a
// different number in the v1, v3, v6 ... v12 texts.
type rules struct {
	v id.RoomVersion
	// top-level rule numbers; 0 when the version has no such rule
	roomID, authEvents, federate, aliases, member, joined, thirdParty, required, userStateKey, powerLevels, redaction int
	// shift of the membership sub-rules from v8 on (join_authorised_via_users_server is 2)
	ms int
}

func newRules(v id.RoomVersion) *rules {
	r := &rules{v: v}
	switch {
	case v.RoomIDIsCreateEventID(): // v12 text
		r.roomID, r.authEvents, r.federate, r.member = 2, 3, 4, 5
		r.joined, r.thirdParty, r.required, r.userStateKey, r.powerLevels = 6, 7, 8, 9, 10
	case v.SpecialCasedAliasesAuth(): // v1 and v3 texts
		r.authEvents, r.federate, r.aliases, r.member = 2, 3, 4, 5
		r.joined, r.thirdParty, r.required, r.userStateKey, r.powerLevels = 6, 7, 8, 9, 10
		if redactionInAuthRules(v) {
			r.redaction = 11
		}
	default: // v6, v7, v8, v10, v11 texts
		r.authEvents, r.federate, r.member = 2, 3, 4
		r.joined, r.thirdParty, r.required, r.userStateKey, r.powerLevels = 5, 6, 7, 8, 9
	}
	if v.RestrictedJoins() {
		r.ms = 1
	}
	return r
}

// redactionInAuthRules reports whether the version's rules authorise redactions themselves
// (rule 11 of the v1 text). Room version 3 dropped it together with event IDs that carry a
// domain, which the rule compares.
func redactionInAuthRules(v id.RoomVersion) bool {
	return v.EventIDFormat() == id.EventIDFormatCustom
}

// fail returns the Error for rule num (its parts joined by dots).
func (r *rules) fail(num []int, format string, args ...any) error {
	parts := make([]string, len(num))
	for i, n := range num {
		parts[i] = fmt.Sprint(n)
	}
	return &Error{Version: r.v, Rule: strings.Join(parts, "."), Reason: fmt.Sprintf(format, args...)}
}

func n(parts ...int) []int { return parts }

func checkVersion(v id.RoomVersion) error {
	if !v.IsKnown() {
		return fmt.Errorf("auth: %w %q", id.ErrUnknownRoomVersion, v)
	}
	return nil
}

// Check applies the authorisation rules of ev's room version (rooms/vN.md "Authorisation rules")
// to ev against state, except the rules about ev's own auth_events, which CheckAuthEvents applies.
func Check(ev Event, state State) error {
	v := ev.Version()
	if err := checkVersion(v); err != nil {
		return err
	}
	r := newRules(v)
	if ev.Type() == typeCreate { // rule 1
		return r.checkCreate(ev)
	}
	// Every later rule reads the create event: up to v11 it is among the auth events (rule 2.4),
	// in v12 the room ID names it (rule 2).
	createEv := state.Get(typeCreate, "")
	if createEv == nil {
		if r.roomID != 0 {
			return r.fail(n(r.roomID), "the create event named by the room ID is not available")
		}
		return r.fail(n(r.authEvents, 4), "no m.room.create event in the state")
	}
	if r.roomID != 0 {
		if err := r.checkRoomIDIsCreate(ev, createEv); err != nil {
			return err
		}
	}
	create := parseCreate(createEv)
	// Rule 3 (4 in v12), m.federate: only a literal false closes the room to other servers.
	if create.noFederate && serverOf(string(ev.Sender())) != serverOf(string(createEv.Sender())) {
		return r.fail(n(r.federate), "room is not federated and sender %s is not on the creator's server", ev.Sender())
	}
	if r.aliases != 0 && ev.Type() == typeAliases {
		// Rule 4 of the v1 and v3 texts: servers may set their own aliases without being in
		// the room.
		sk := ev.StateKey()
		if sk == nil {
			return r.fail(n(r.aliases, 1), "m.room.aliases without a state_key")
		}
		if d := serverOf(string(ev.Sender())); d == "" || *sk != d {
			return r.fail(n(r.aliases, 2), "sender's server does not match state_key %q", *sk)
		}
		return nil
	}
	if ev.Type() == typeMember {
		return r.checkMember(ev, state, create)
	}
	// Everything else needs a joined sender.
	sender := ev.Sender()
	if m := membershipOf(state, sender); m != membershipJoin {
		return r.fail(n(r.joined), "sender %s is not joined to the room (membership %q)", sender, m)
	}
	pl := loadPowerLevels(v, state, create, parseLazy, sender)
	senderLevel := pl.User(sender)
	if ev.Type() == typeThirdPartyInvite { // the invite level, not the event's required level
		if senderLevel >= pl.Invite() {
			return nil
		}
		return r.fail(n(r.thirdParty, 1), "sender's power level %d is below the invite level %d", senderLevel, pl.Invite())
	}
	sk := ev.StateKey()
	// The required power level of the event type (server-server API, "Definitions").
	if need := pl.Required(ev.Type(), sk != nil); need > senderLevel {
		return r.fail(n(r.required), "sending %s needs power level %d, sender has %d", ev.Type(), need, senderLevel)
	}
	// State keyed by a user ID belongs to that user.
	if sk != nil && strings.HasPrefix(*sk, "@") && *sk != string(sender) {
		return r.fail(n(r.userStateKey), "state_key %q is another user's ID", *sk)
	}
	if ev.Type() == typePowerLevels {
		return r.checkPowerLevels(ev, state, create, senderLevel)
	}
	// Rule 11 of the v1 text (v1–v2 only): the redact level, or the same server as the event
	// redacted. From v3 redactions are checked when carried out ("Handling redactions").
	if r.redaction != 0 && ev.Type() == typeRedaction {
		if senderLevel >= pl.Redact() {
			return nil
		}
		if d := serverOf(string(ev.EventID())); d != "" && serverOf(string(ev.Redacts())) == d {
			return nil
		}
		return r.fail(n(r.redaction, 3), "sender's power level %d is below the redact level %d and %s is from another server", senderLevel, pl.Redact(), ev.Redacts())
	}
	return nil
}

// checkRoomIDIsCreate is rule 2 of the v12 text: the room ID is the create event's ID with the
// sigil "!". Whether that create event was accepted is for the caller to know.
func (r *rules) checkRoomIDIsCreate(ev, createEv Event) error {
	want := roomIDOfCreate(createEv.EventID())
	if want == "" || ev.RoomID() != want {
		return r.fail(n(r.roomID), "room ID %s is not the ID of create event %s", ev.RoomID(), createEv.EventID())
	}
	return nil
}

// roomIDOfCreate is the room ID that a v12 create event's ID implies.
func roomIDOfCreate(eventID id.EventID) id.RoomID {
	s := string(eventID)
	if len(s) < 2 || s[0] != '$' {
		return ""
	}
	return id.RoomID("!" + s[1:])
}

// serverOf returns the part after the first colon of a user, room or (v1–v2) event ID, the
// server name, or "" when there is none.
func serverOf(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return ""
}
