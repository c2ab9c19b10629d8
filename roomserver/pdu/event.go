package pdu

import (
	"crypto/sha256"
	"encoding/json"
	"sync"

	"maunium.net/go/mautrix/id"
)

// Event is a persistent data unit of a known room version, checked against that version's
// event format. It is immutable; slices it returns must not be modified.
type Event struct {
	version    id.RoomVersion
	json       []byte // canonical JSON of the whole PDU
	eventID    id.EventID
	roomID     id.RoomID
	typ        string
	stateKey   *string
	sender     id.UserID
	content    json.RawMessage // slice of json
	unsigned   json.RawMessage // slice of json, or nil
	prevEvents []id.EventID
	authEvents []id.EventID
	depth      int64
	ts         int64
	redacts    id.EventID
	refHash    [32]byte
	// lazyRef marks an event from ParseStored, whose reference hash is computed under refOnce
	// on first use: most stored events are read for their state, never for their hash.
	lazyRef bool
	refOnce sync.Once
}

// EventID returns the event's ID: the event_id field in room versions 1 and 2, otherwise
// derived from the reference hash.
func (e *Event) EventID() id.EventID { return e.eventID }

// RoomID returns the room's ID; for a room version 12 m.room.create event it is derived from
// the event's own ID.
func (e *Event) RoomID() id.RoomID { return e.roomID }

// Type returns the event type.
func (e *Event) Type() string { return e.typ }

// StateKey returns the state key, or nil for an event that is not a state event.
func (e *Event) StateKey() *string {
	if e.stateKey == nil {
		return nil
	}
	s := *e.stateKey
	return &s
}

// Sender returns the user who sent the event.
func (e *Event) Sender() id.UserID { return e.sender }

// Content returns the event's content as canonical JSON.
func (e *Event) Content() json.RawMessage { return e.content }

// PrevEventIDs returns the IDs of the event's prev_events.
func (e *Event) PrevEventIDs() []id.EventID { return e.prevEvents }

// AuthEventIDs returns the IDs of the event's auth_events.
func (e *Event) AuthEventIDs() []id.EventID { return e.authEvents }

// Depth returns the event's depth.
func (e *Event) Depth() int64 { return e.depth }

// OriginServerTS returns the origin_server_ts timestamp in milliseconds.
func (e *Event) OriginServerTS() int64 { return e.ts }

// Redacts returns the ID of the event a redaction redacts: the top-level redacts field before
// room version 11, content.redacts from version 11; "" if there is none.
func (e *Event) Redacts() id.EventID { return e.redacts }

// Version returns the room version the event was parsed for.
func (e *Event) Version() id.RoomVersion { return e.version }

// JSON returns the PDU as canonical JSON, as it goes over federation and into storage.
func (e *Event) JSON() []byte { return e.json }

// Origin returns the name of the server that created the event: the sender's server.
func (e *Event) Origin() string { return serverOf(string(e.sender)) }

// Unsigned returns the unsigned object as canonical JSON, or nil if there is none.
func (e *Event) Unsigned() json.RawMessage { return e.unsigned }

// ReferenceHash returns the event's reference hash (server-server-api.md "Calculating the
// reference hash for an event"), which room versions 1 and 2 list next to event IDs.
func (e *Event) ReferenceHash() []byte {
	if e.lazyRef {
		e.refOnce.Do(e.computeRefHash)
	}
	h := e.refHash
	return h[:]
}

func (e *Event) computeRefHash() {
	tree := e.tree()
	e.refHash = sha256.Sum256(redactedSigningBytes(e.version, &tree))
}
