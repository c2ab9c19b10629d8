package pdu

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// MaxPDUSize is the largest an event may be, in bytes of canonical JSON including signatures
// (client-server-api "Size limits").
const MaxPDUSize = 65536

// maxInputSize bounds the raw input Parse reads. It is larger than MaxPDUSize because
// whitespace and escapes that canonical JSON drops may make the input longer.
const maxInputSize = 16 * MaxPDUSize

// Limits on the reference lists (data/api/server-server/definitions/pdu_v*.yaml).
const (
	maxPrevEvents = 20
	maxAuthEvents = 10
)

// Parse reads a PDU of the given room version, as received over federation or loaded from
// storage, and checks it against the version's event format: the keys each version requires
// and their types, the size limits, and the strict canonical JSON of room versions 6 and
// later (rooms/v6.md "Canonical JSON"). In room versions 3 and later an event_id key is
// removed, as those versions derive the ID from the reference hash (rooms/v3.md "Event IDs").
func Parse(version id.RoomVersion, raw []byte) (*Event, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	if len(raw) > maxInputSize {
		return nil, fmt.Errorf("%w: %d bytes of input", ErrTooLarge, len(raw))
	}
	tree, err := parseJSON(raw, numModeOf(version))
	if err != nil {
		return nil, err
	}
	return fromTree(version, &tree, len(raw))
}

// numModeOf says how numbers are read in the room version: strictly from version 6
// (rooms/v6.md "Canonical JSON"), leniently before (rooms/v1.md "Canonical JSON").
func numModeOf(version id.RoomVersion) numMode {
	if version.ForbidFloatsAndBigInts() {
		return numStrict
	}
	return numLenient
}

// normalise removes an event_id key from events of room versions whose IDs are hashes: it
// is not part of their format (rooms/v3.md "Event format") and must not change the hashes.
func normalise(version id.RoomVersion, tree *value) *value {
	if version.EventIDFormat() != id.EventIDFormatCustom && tree.get("event_id") != nil {
		t := tree.without("event_id")
		return &t
	}
	return tree
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidEvent, field, fmt.Sprintf(format, args...))
}

// fromTree checks a parsed event against the event format of its room version
// (rooms/vN.md "Event format", data/api/server-server/definitions/pdu_v*.yaml) and
// builds the Event. sizeHint is about the size of its JSON.
func fromTree(version id.RoomVersion, tree *value, sizeHint int) (*Event, error) {
	if tree.kind != kindObject {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	tree = normalise(version, tree)
	e := &Event{version: version}

	// Keys every version requires (pdu_base.yaml).
	typ, err := requiredString(tree, "type")
	if err != nil {
		return nil, err
	}
	if len(typ) > maxIDSize {
		return nil, fmt.Errorf("%w: type is longer than %d bytes", ErrTooLarge, maxIDSize)
	}
	e.typ = typ
	sender, err := requiredString(tree, "sender")
	if err != nil {
		return nil, err
	}
	if _, err = checkUserID(sender); err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	e.sender = id.UserID(sender)
	content := tree.get("content")
	if content == nil || content.kind != kindObject {
		return nil, invalid("content", "missing or not an object")
	}
	if e.ts, err = requiredInt(tree, "origin_server_ts"); err != nil {
		return nil, err
	}
	// depth: "Must be less than the maximum value for an integer" and at most that limit when
	// the room reaches it (pdu_v1.yaml; 2^53-1 from v6 by the canonical JSON range).
	if e.depth, err = requiredInt(tree, "depth"); err != nil {
		return nil, err
	}
	if e.depth < 0 {
		return nil, invalid("depth", "negative")
	}
	hashes := tree.get("hashes")
	if hashes == nil || hashes.kind != kindObject {
		return nil, invalid("hashes", "missing or not an object")
	}
	if h := hashes.get("sha256"); h == nil || h.kind != kindString {
		return nil, invalid("hashes", "sha256 missing or not a string")
	}
	if err := checkSignatures(tree.get("signatures")); err != nil {
		return nil, err
	}
	if u := tree.get("unsigned"); u != nil && u.kind != kindObject {
		return nil, invalid("unsigned", "not an object")
	}
	if sk := tree.get("state_key"); sk != nil {
		if sk.kind != kindString {
			return nil, invalid("state_key", "not a string")
		}
		if len(sk.str) > maxIDSize {
			return nil, fmt.Errorf("%w: state_key is longer than %d bytes", ErrTooLarge, maxIDSize)
		}
		s := sk.str
		e.stateKey = &s
	}

	// room_id: required before v12 (room_id_before_v12.yaml); from v12 omitted from
	// m.room.create and a create event ID otherwise (room_id_v12.yaml, rooms/v12.md
	// "Authorisation rules" 1.2).
	isV12Create := version.RoomIDIsCreateEventID() && typ == event.StateCreate.Type
	if isV12Create {
		if tree.get("room_id") != nil {
			return nil, invalid("room_id", "must be absent from m.room.create in room version %s", version)
		}
	} else {
		roomID, err := requiredString(tree, "room_id")
		if err != nil {
			return nil, err
		}
		if err := checkRoomID(version, roomID); err != nil {
			return nil, fmt.Errorf("room_id: %w", err)
		}
		e.roomID = id.RoomID(roomID)
	}

	if version.EventIDFormat() == id.EventIDFormatCustom {
		eventID, err := requiredString(tree, "event_id")
		if err != nil {
			return nil, err
		}
		if err := checkEventID(version, eventID); err != nil {
			return nil, fmt.Errorf("event_id: %w", err)
		}
		e.eventID = id.EventID(eventID)
	}
	if e.prevEvents, err = eventRefs(version, tree, "prev_events", maxPrevEvents); err != nil {
		return nil, err
	}
	if e.authEvents, err = eventRefs(version, tree, "auth_events", maxAuthEvents); err != nil {
		return nil, err
	}
	if isV12Create && (len(e.prevEvents) > 0 || len(e.authEvents) > 0) {
		// Whatever a v12 create event referenced would have to be in the room it creates,
		// whose ID is the create event's own hash: such references can never be satisfied.
		return nil, invalid("m.room.create", "must have no prev_events or auth_events in room version %s", version)
	}

	// redacts: top-level before v11, in content from v11 (rooms/v11.md "Event format").
	if version.RedactsInContent() {
		if r := content.get("redacts"); r != nil && r.kind == kindString {
			e.redacts = id.EventID(r.str)
		}
	} else if r := tree.get("redacts"); r != nil {
		if r.kind != kindString {
			return nil, invalid("redacts", "not a string")
		}
		e.redacts = id.EventID(r.str)
	}

	e.json = e.encodeTop(tree, sizeHint)
	if len(e.json) > MaxPDUSize {
		return nil, fmt.Errorf("%w: %d bytes of canonical JSON, more than %d", ErrTooLarge, len(e.json), MaxPDUSize)
	}
	e.refHash = sha256.Sum256(redactedSigningBytes(version, tree))
	if e.eventID == "" {
		e.eventID = eventIDFromHash(version, e.refHash[:])
	}
	if isV12Create {
		// The room ID is the create event's ID with '!' for '$' (rooms/v12.md "Event format").
		e.roomID = id.RoomID("!" + base64.RawURLEncoding.EncodeToString(e.refHash[:]))
	}
	return e, nil
}

// encodeTop writes the canonical JSON of the whole event and keeps content and unsigned as
// slices of it.
func (e *Event) encodeTop(tree *value, sizeHint int) []byte {
	buf := make([]byte, 0, min(max(sizeHint, 512), MaxPDUSize+1))
	buf = append(buf, '{')
	var content, unsigned [2]int
	for i := range tree.obj {
		m := &tree.obj[i]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, m.key)
		buf = append(buf, ':')
		start := len(buf)
		buf = appendCanonical(buf, &m.val)
		switch m.key {
		case "content":
			content = [2]int{start, len(buf)}
		case "unsigned":
			unsigned = [2]int{start, len(buf)}
		}
	}
	buf = append(buf, '}')
	buf = buf[:len(buf):len(buf)]
	e.content = json.RawMessage(buf[content[0]:content[1]:content[1]])
	if unsigned[1] > 0 {
		e.unsigned = json.RawMessage(buf[unsigned[0]:unsigned[1]:unsigned[1]])
	}
	return buf
}

func requiredString(tree *value, key string) (string, error) {
	v := tree.get(key)
	if v == nil {
		return "", invalid(key, "missing")
	}
	if v.kind != kindString {
		return "", invalid(key, "not a string")
	}
	return v.str, nil
}

func requiredInt(tree *value, key string) (int64, error) {
	v := tree.get(key)
	if v == nil {
		return 0, invalid(key, "missing")
	}
	n, ok := v.int64Value()
	if !ok {
		return 0, invalid(key, "not an integer in the 64-bit range")
	}
	return n, nil
}

// checkSignatures checks the shape of the signatures object: server name to key ID to
// signature string (pdu_base.yaml).
func checkSignatures(sigs *value) error {
	if sigs == nil || sigs.kind != kindObject {
		return invalid("signatures", "missing or not an object")
	}
	for _, server := range sigs.obj {
		if server.val.kind != kindObject {
			return invalid("signatures", "entry for %q is not an object", server.key)
		}
		for _, sig := range server.val.obj {
			if sig.val.kind != kindString {
				return invalid("signatures", "signature %q of %q is not a string", sig.key, server.key)
			}
		}
	}
	return nil
}

// eventRefs reads prev_events or auth_events: [event_id, {"sha256": hash}] pairs in room
// versions 1 and 2 (pdu_v1.yaml), plain event IDs from version 3 (pdu_v3.yaml). The hash
// object of a pair is not checked beyond being an object: servers are known to send {}.
func eventRefs(version id.RoomVersion, tree *value, key string, limit int) ([]id.EventID, error) {
	list := tree.get(key)
	if list == nil {
		return nil, invalid(key, "missing")
	}
	if list.kind != kindArray {
		return nil, invalid(key, "not an array")
	}
	if len(list.arr) > limit {
		return nil, invalid(key, "%d entries, more than %d", len(list.arr), limit)
	}
	pairs := version.EventIDFormat() == id.EventIDFormatCustom
	ids := make([]id.EventID, len(list.arr))
	for i := range list.arr {
		item := &list.arr[i]
		if pairs {
			if item.kind != kindArray || len(item.arr) != 2 || item.arr[1].kind != kindObject {
				return nil, invalid(key, "entry %d is not an [event_id, hashes] pair", i)
			}
			item = &item.arr[0]
		}
		if item.kind != kindString {
			return nil, invalid(key, "entry %d is not an event ID string", i)
		}
		if err := checkEventID(version, item.str); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		ids[i] = id.EventID(item.str)
	}
	return ids, nil
}
