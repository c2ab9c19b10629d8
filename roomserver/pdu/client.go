package pdu

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// ClientEvent is an event in the client-server API's format (client-server API, "Room Event
// Format"): what clients see of a PDU, with unsigned data added by the serving server.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        id.EventID      `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         id.RoomID       `json:"room_id"`
	Sender         id.UserID       `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        id.EventID      `json:"redacts,omitempty"`
	Unsigned       map[string]any  `json:"unsigned,omitempty"`
}

// Client returns the event in the client format. unsigned holds what the server adds (age,
// transaction_id, prev_content, redacted_because, m.relations); nil for none.
func (e *Event) Client(unsigned map[string]any) *ClientEvent {
	return &ClientEvent{
		Content: e.content, EventID: e.eventID, OriginServerTS: e.ts, RoomID: e.roomID, Sender: e.sender,
		StateKey: e.StateKey(), Type: e.typ, Redacts: e.redacts, Unsigned: unsigned,
	}
}
