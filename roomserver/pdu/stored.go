package pdu

import (
	"bytes"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ParseStored reads an event this server stored: raw must be the JSON() of an event that Parse
// or Build accepted for the same room version, and eventID its EventID. The result equals what
// Parse returns, at a fraction of the cost: raw, already canonical, becomes the event's JSON
// (the caller must not change it afterwards) with content and unsigned as slices of it; only
// the top-level keys the accessors need are decoded; the reference hash waits for first use.
// Without eventID, room versions 3 and later need the hash at once, and ParseStored is Parse.
//
// Parse's checks of identifiers, signatures, hashes and canonical form are not repeated: the
// event passed them before it was stored, and the rows are our own. Kept are the cheap checks
// that stop a damaged row from becoming an Event whose accessors lie: the JSON's structure,
// the required keys and their types, and the size limits.
func ParseStored(version id.RoomVersion, raw []byte, eventID id.EventID) (*Event, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	if eventID == "" && version.EventIDFormat() != id.EventIDFormatCustom {
		return Parse(version, raw) // the ID is the hash, which needs the whole event decoded
	}
	if len(raw) > MaxPDUSize {
		return nil, fmt.Errorf("%w: %d bytes of stored event, more than %d", ErrTooLarge, len(raw), MaxPDUSize)
	}
	e := &Event{version: version, json: raw[:len(raw):len(raw)], lazyRef: true}
	found, storedID, err := e.scanStored()
	if err != nil {
		return nil, err
	}
	if want := fType | fSender | fContent | fTS | fDepth | fPrev | fAuth; found&want != want {
		return nil, invalid("stored event", "a required key is missing")
	}
	if len(e.typ) > maxIDSize || e.stateKey != nil && len(*e.stateKey) > maxIDSize {
		return nil, fmt.Errorf("%w: type or state_key is longer than %d bytes", ErrTooLarge, maxIDSize)
	}
	if e.depth < 0 {
		return nil, invalid("depth", "negative")
	}
	if e.Origin() == "" {
		return nil, fmt.Errorf("%w: %q is not a user ID", ErrInvalidEvent, e.sender)
	}
	if len(e.prevEvents) > maxPrevEvents || len(e.authEvents) > maxAuthEvents {
		return nil, invalid("stored event", "too many prev_events or auth_events")
	}

	if version.EventIDFormat() == id.EventIDFormatCustom {
		// The ID is in the JSON; a different one given means the row is not what it claims.
		if found&fEventID == 0 || eventID != "" && eventID != storedID {
			return nil, invalid("event_id", "stored %q, expected %q", storedID, eventID)
		}
		e.eventID = storedID
	} else {
		e.eventID = eventID
	}

	if version.RoomIDIsCreateEventID() && e.typ == event.StateCreate.Type {
		if found&fRoomID != 0 {
			return nil, invalid("room_id", "must be absent from m.room.create in room version %s", version)
		}
		// The room ID is the create event's ID with '!' for '$' (rooms/v12.md "Event format"):
		// both are the URL-safe unpadded base64 of the reference hash.
		if len(e.eventID) < 2 {
			return nil, invalid("event_id", "%q is not an event ID", e.eventID)
		}
		e.roomID = id.RoomID("!" + e.eventID[1:])
	} else if found&fRoomID == 0 {
		return nil, invalid("room_id", "missing")
	}
	return e, nil
}

// Keys of a stored event that scanStored found.
const (
	fType = 1 << iota
	fSender
	fContent
	fTS
	fDepth
	fPrev
	fAuth
	fRoomID
	fEventID
)

// scanStored walks the top-level object of a stored event's JSON once, setting the fields the
// accessors return and stepping over the rest (signatures, hashes) without decoding it. It
// returns which keys it found and the event_id key.
func (e *Event) scanStored() (found int, eventID id.EventID, err error) {
	version := e.version
	p := parser{data: e.json, mode: numModeOf(version)}
	err = p.walkObject(func(key []byte) error {
		var err error
		var s string
		switch string(key) {
		case "type":
			found |= fType
			e.typ, err = p.stringField("type")
		case "sender":
			found |= fSender
			s, err = p.stringField("sender")
			e.sender = id.UserID(s)
		case "state_key":
			var sk string
			sk, err = p.stringField("state_key")
			e.stateKey = &sk
		case "room_id":
			found |= fRoomID
			s, err = p.stringField("room_id")
			e.roomID = id.RoomID(s)
		case "event_id":
			found |= fEventID
			s, err = p.stringField("event_id")
			eventID = id.EventID(s)
		case "origin_server_ts":
			found |= fTS
			e.ts, err = p.intField("origin_server_ts")
		case "depth":
			found |= fDepth
			e.depth, err = p.intField("depth")
		case "prev_events":
			found |= fPrev
			e.prevEvents, err = p.refsField(version, "prev_events")
		case "auth_events":
			found |= fAuth
			e.authEvents, err = p.refsField(version, "auth_events")
		case "content":
			found |= fContent
			e.content, e.redacts, err = p.contentField(version.RedactsInContent())
		case "unsigned":
			e.unsigned, err = p.objectField("unsigned")
		case "redacts":
			if version.RedactsInContent() {
				return p.skipValue()
			}
			s, err = p.stringField("redacts")
			e.redacts = id.EventID(s)
		default:
			err = p.skipValue()
		}
		return err
	})
	if err != nil {
		return 0, "", err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return 0, "", p.syntaxError("data after the top-level value")
	}
	return found, eventID, nil
}

// walkObject reads the object at p.pos, calling fn with each key as it is in the JSON, not
// decoded; fn must read or skip the value. Keys are compared undecoded, which is exact for
// canonical JSON: it escapes only '"', '\' and control characters, which no key we look for has.
func (p *parser) walkObject(fn func(key []byte) error) error {
	p.skipSpace()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	p.pos++
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.syntaxError("expected an object key")
		}
		start := p.pos + 1
		if err := p.skipString(); err != nil {
			return err
		}
		key := p.data[start : p.pos-1]
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.syntaxError("expected ':'")
		}
		p.pos++
		p.skipSpace()
		if err := fn(key); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.syntaxError("unterminated object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return nil
		default:
			return p.syntaxError("expected ',' or '}'")
		}
	}
}

// skipString moves past the string whose opening quote is at p.pos without decoding it. A
// quote ends the string unless an odd run of backslashes escapes it.
func (p *parser) skipString() error {
	p.pos++
	for {
		i := bytes.IndexByte(p.data[p.pos:], '"')
		if i < 0 {
			p.pos = len(p.data)
			return p.syntaxError("unterminated string")
		}
		end := p.pos + i
		n := 0
		for end-n-1 >= p.pos && p.data[end-n-1] == '\\' {
			n++
		}
		p.pos = end + 1
		if n%2 == 0 {
			return nil
		}
	}
}

// skipValue moves past one value without decoding it. It checks only that strings end and
// brackets balance, which is enough to find where a value of our own JSON ends; it keeps no
// stack, so deep nesting costs nothing.
func (p *parser) skipValue() error {
	depth := 0
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '"':
			if err := p.skipString(); err != nil {
				return err
			}
		case '{', '[':
			depth++
			p.pos++
			continue
		case '}', ']':
			if depth == 0 {
				return p.syntaxError("expected a value")
			}
			depth--
			p.pos++
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return p.syntaxError("expected a value")
			}
			p.pos++
			continue
		default: // a number or literal
			p.pos++
			for p.pos < len(p.data) && isScalarByte(p.data[p.pos]) {
				p.pos++
			}
		}
		if depth == 0 {
			return nil
		}
	}
	return p.syntaxError("unexpected end of input")
}

func isScalarByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'E'
}

func (p *parser) stringField(key string) (string, error) {
	if p.pos >= len(p.data) || p.data[p.pos] != '"' {
		return "", invalid(key, "not a string")
	}
	return p.string()
}

// intField reads an integer as Parse's requiredInt does. Canonical JSON writes integers as
// plain digits, so that is all it reads.
func (p *parser) intField(key string) (int64, error) {
	neg := p.pos < len(p.data) && p.data[p.pos] == '-'
	if neg {
		p.pos++
	}
	digits := p.digits()
	if digits == 0 || digits > 19 || p.pos < len(p.data) && isScalarByte(p.data[p.pos]) {
		return 0, invalid(key, "not an integer in the 64-bit range")
	}
	var n uint64 // 19 digits fit
	for _, c := range p.data[p.pos-digits : p.pos] {
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n), nil
	case !neg && n <= 1<<63-1:
		return int64(n), nil
	}
	return 0, invalid(key, "not an integer in the 64-bit range")
}

// objectField returns the object at p.pos as a slice of the input.
func (p *parser) objectField(key string) ([]byte, error) {
	start := p.pos
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		return nil, invalid(key, "not an object")
	}
	if err := p.skipValue(); err != nil {
		return nil, err
	}
	return p.data[start:p.pos:p.pos], nil
}

// contentField returns content as a slice of the input and, with redactsInContent, its
// redacts key if that is a string (rooms/v11.md "Event format").
func (p *parser) contentField(redactsInContent bool) ([]byte, id.EventID, error) {
	if !redactsInContent {
		content, err := p.objectField("content")
		return content, "", err
	}
	start := p.pos
	var redacts id.EventID
	err := p.walkObject(func(key []byte) error {
		if string(key) == "redacts" && p.pos < len(p.data) && p.data[p.pos] == '"' {
			s, err := p.string()
			redacts = id.EventID(s)
			return err
		}
		return p.skipValue()
	})
	if err != nil {
		return nil, "", fmt.Errorf("content: %w", err)
	}
	return p.data[start:p.pos:p.pos], redacts, nil
}

// refsField reads prev_events or auth_events: [event_id, hashes] pairs in room versions 1 and
// 2 (pdu_v1.yaml), plain event IDs from version 3 (pdu_v3.yaml).
func (p *parser) refsField(version id.RoomVersion, key string) ([]id.EventID, error) {
	pairs := version.EventIDFormat() == id.EventIDFormatCustom
	var buf [maxPrevEvents]id.EventID // collected here, so that the result is one allocation
	ids := buf[:0]
	err := p.walkArray(func() error {
		if pairs {
			n := 0
			return p.walkArray(func() error {
				n++
				if n > 1 {
					return p.skipValue()
				}
				s, err := p.stringField(key)
				ids = append(ids, id.EventID(s))
				return err
			})
		}
		s, err := p.stringField(key)
		ids = append(ids, id.EventID(s))
		return err
	})
	if err != nil {
		return nil, err
	}
	return slices.Clone(ids), nil
}

// walkArray reads the array at p.pos, calling fn to read each element.
func (p *parser) walkArray(fn func() error) error {
	if p.pos >= len(p.data) || p.data[p.pos] != '[' {
		return p.syntaxError("expected an array")
	}
	p.pos++
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return nil
	}
	for {
		p.skipSpace()
		if err := fn(); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.syntaxError("unterminated array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return nil
		default:
			return p.syntaxError("expected ',' or ']'")
		}
	}
}
