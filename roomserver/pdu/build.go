package pdu

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

// Template describes a new local event for Build.
type Template struct {
	Type     string
	StateKey *string // nil for an event that is not a state event
	Sender   id.UserID
	Content  json.RawMessage // nil means {}
	RoomID   id.RoomID       // ignored for a room version 12 m.room.create
	// PrevEvents and AuthEvents are the event IDs the event references.
	PrevEvents, AuthEvents []id.EventID
	Depth                  int64
	OriginServerTS         int64 // milliseconds; 0 means now
	// Redacts is the event a redaction redacts, written at the top level before room
	// version 11 and into content from version 11 (rooms/v11.md "Event format").
	Redacts id.EventID
	// RefHashes holds, for room versions 1 and 2 only, the reference hashes
	// (Event.ReferenceHash) of the events in PrevEvents and AuthEvents, written next to their
	// IDs (pdu_v1.yaml). An event missing from it is written with an empty hashes object {},
	// as other servers do and as receivers accept: nobody checks these hashes.
	RefHashes map[id.EventID][]byte
}

// Build makes a new event from a template: it fills in the content hash, signs the event as
// serverName with key (server-server-api.md "Adding hashes and signatures to outgoing
// events") and computes the event ID; in room versions 1 and 2 it makes up a new
// "$random:serverName" ID (rooms/v1.md "Event IDs"). The sender must belong to serverName.
// The result passes Parse.
func Build(version id.RoomVersion, t Template, serverName string, key *federation.SigningKey) (*Event, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	if err := checkSigningKey(key); err != nil {
		return nil, err
	}
	if serverOf(string(t.Sender)) != serverName {
		return nil, fmt.Errorf("build event: sender %s does not belong to %s", t.Sender, serverName)
	}
	content := value{kind: kindObject}
	if len(t.Content) > 0 {
		var err error
		if content, err = parseJSON(t.Content, numModeOf(version)); err != nil {
			return nil, fmt.Errorf("build event: content: %w", err)
		}
		if content.kind != kindObject {
			return nil, fmt.Errorf("build event: %w: content is not an object", ErrInvalidEvent)
		}
	}
	ts := t.OriginServerTS
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}

	ms := []member{
		{key: "type", val: stringValue(t.Type)},
		{key: "sender", val: stringValue(string(t.Sender))},
		{key: "depth", val: intValue(t.Depth)},
		{key: "origin_server_ts", val: intValue(ts)},
		{key: "prev_events", val: refList(version, t.PrevEvents, t.RefHashes)},
		{key: "auth_events", val: refList(version, t.AuthEvents, t.RefHashes)},
	}
	if t.StateKey != nil {
		ms = append(ms, member{key: "state_key", val: stringValue(*t.StateKey)})
	}
	if !version.RoomIDIsCreateEventID() || t.Type != event.StateCreate.Type {
		ms = append(ms, member{key: "room_id", val: stringValue(string(t.RoomID))})
	}
	if t.Redacts != "" {
		if version.RedactsInContent() {
			if r := content.get("redacts"); r != nil && (r.kind != kindString || r.str != string(t.Redacts)) {
				return nil, fmt.Errorf("build event: content.redacts differs from Redacts %s", t.Redacts)
			}
			content = content.with("redacts", stringValue(string(t.Redacts)))
		} else {
			ms = append(ms, member{key: "redacts", val: stringValue(string(t.Redacts))})
		}
	}
	ms = append(ms, member{key: "content", val: content})
	if version.EventIDFormat() == id.EventIDFormatCustom {
		ms = append(ms, member{key: "event_id", val: stringValue("$" + rand.Text() + ":" + serverName)})
	}
	tree := objectOf(ms...)

	hash := contentHash(&tree)
	tree = tree.with("hashes", objectOf(member{key: "sha256", val: stringValue(b64(hash[:]))}))
	tree = tree.with("signatures", value{kind: kindObject})
	sig := ed25519.Sign(key.Priv, redactedSigningBytes(version, &tree))
	tree = addSignature(&tree, serverName, string(key.ID), sig)

	ev, err := Parse(version, tree.encode())
	if err != nil {
		return nil, fmt.Errorf("build event: %w", err)
	}
	return ev, nil
}

// refList writes prev_events or auth_events in the room version's format: [id, hashes] pairs
// in versions 1 and 2 (pdu_v1.yaml), plain IDs later (pdu_v3.yaml).
func refList(version id.RoomVersion, ids []id.EventID, hashes map[id.EventID][]byte) value {
	list := value{kind: kindArray, arr: make([]value, len(ids))}
	for i, evID := range ids {
		if version.EventIDFormat() != id.EventIDFormatCustom {
			list.arr[i] = stringValue(string(evID))
			continue
		}
		h := value{kind: kindObject}
		if hash, ok := hashes[evID]; ok {
			h = objectOf(member{key: "sha256", val: stringValue(b64(hash))})
		}
		list.arr[i] = value{kind: kindArray, arr: []value{stringValue(string(evID)), h}}
	}
	return list
}
