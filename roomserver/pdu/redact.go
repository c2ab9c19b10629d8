package pdu

import (
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Redact applies the redaction algorithm of the room version to an event and returns the
// result as canonical JSON. The input need only be a JSON object: the function serves
// signature checks and clients' local redaction as well as stored events. In room versions 3
// and later an event_id key is removed first, as in Parse.
func Redact(version id.RoomVersion, raw []byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	tree, err := parseJSON(raw, numModeOf(version))
	if err != nil {
		return nil, err
	}
	if tree.kind != kindObject {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	r := redactTree(version, normalise(version, &tree), false)
	return r.encode(), nil
}

// Redacted returns the event with the redaction algorithm of its room version applied. Its
// ID, hashes and signatures are those of the original; unsigned is gone.
func (e *Event) Redacted() *Event {
	tree := e.tree()
	r := redactTree(e.version, &tree, false)
	out, err := fromTree(e.version, &r, len(e.json))
	if err != nil {
		// Redaction keeps every key the event format requires and only shrinks the event,
		// so a valid event always redacts to a valid event.
		panic(fmt.Sprintf("pdu: redacted form of valid event %s is invalid: %v", e.eventID, err))
	}
	return out
}

// tree parses the event's own canonical JSON again. It was checked when the event was made,
// so this cannot fail.
func (e *Event) tree() value {
	tree, err := parseJSON(e.json, numModeOf(e.version))
	if err != nil {
		panic(fmt.Sprintf("pdu: canonical JSON of event %s does not parse: %v", e.eventID, err))
	}
	return tree
}

// redactTree is the redaction algorithm (rooms/v1.md "Redactions", v6, v8, v9 and v11
// "Redactions"; rooms/v12.md uses v11's). It returns a new object sharing unchanged values
// with ev. With forSigning the signatures are left out too, giving what the reference hash
// and the signatures cover (server-server-api.md "Signing Events").
func redactTree(version id.RoomVersion, ev *value, forSigning bool) value {
	updated := version.UpdatedRedactionRules()
	out := ev.keep(func(key string) bool {
		switch key {
		case "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
			"depth", "prev_events", "auth_events", "origin_server_ts":
			return true
		case "signatures":
			return !forSigning
		case "prev_state", "origin", "membership":
			// No longer protected from room version 11 (rooms/v11.md "Redactions").
			return !updated
		}
		return false
	})
	content := ev.get("content")
	if content == nil || content.kind != kindObject {
		content = &value{kind: kindObject}
	}
	typ := ""
	if t := ev.get("type"); t != nil && t.kind == kindString {
		typ = t.str
	}
	redacted := redactContent(version, typ, content)
	if c := out.get("content"); c != nil {
		*c = redacted // out's members are its own copy
		return out
	}
	return out.with("content", redacted)
}

// redactContent keeps the content keys the room version's redaction algorithm allows for the
// event type.
func redactContent(version id.RoomVersion, typ string, content *value) value {
	updated := version.UpdatedRedactionRules()
	var keys []string
	switch typ {
	case event.StateMember.Type:
		keys = []string{"membership"}
		if version.RestrictedJoinsFix() { // v9 "Redactions"
			keys = append(keys, "join_authorised_via_users_server")
		}
	case event.StateCreate.Type:
		if updated { // v11: the whole content
			return *content
		}
		keys = []string{"creator"}
	case event.StateJoinRules.Type:
		keys = []string{"join_rule"}
		if version.RestrictedJoins() { // v8 "Redactions"
			keys = append(keys, "allow")
		}
	case event.StatePowerLevels.Type:
		keys = []string{"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
		if updated { // v11
			keys = append(keys, "invite")
		}
	case "m.room.aliases":
		if version.SpecialCasedAliasesAuth() { // dropped in v6 "Redactions"
			keys = []string{"aliases"}
		}
	case event.StateHistoryVisibility.Type:
		keys = []string{"history_visibility"}
	case event.EventRedaction.Type:
		if updated { // v11
			keys = []string{"redacts"}
		}
	}
	out := value{kind: kindObject}
	for _, k := range keys {
		if v := content.get(k); v != nil {
			out.obj = append(out.obj, member{key: k, val: *v})
		}
	}
	if updated && typ == event.StateMember.Type {
		// v11: "it allows the signed key of the third_party_invite key".
		if tpi := content.get("third_party_invite"); tpi != nil {
			if signed := tpi.get("signed"); signed != nil {
				out.obj = append(out.obj, member{key: "third_party_invite",
					val: objectOf(member{key: "signed", val: *signed})})
			}
		}
	}
	return objectOf(out.obj...)
}
