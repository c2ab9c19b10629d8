package syncapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// legacyTimelineLimit bounds how many events of one room one /events answer carries.
const legacyTimelineLimit = 100

// defaultEventsTimeout is the wait of GET /events without a timeout parameter.
const defaultEventsTimeout = 30 * time.Second

// events answers the deprecated GET /events (client-server API r0.6.1, "Getting events for
// a room"): the events of the user's rooms after the from token as one flat list, each with
// its room_id — timeline, typing and receipts — and presence. Some clients and test suites
// still use it; it is served from /sync's machinery with its own tokens. Without from it
// starts at the present. To-device messages and device lists stay with /sync.
func (a *API) events(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	q := r.URL.Query()
	limit := legacyTimelineLimit
	p := &syncParams{
		timeout: defaultEventsTimeout,
		filter:  &synctypes.Filter{Room: &synctypes.RoomFilter{Timeline: &synctypes.RoomEventFilter{EventFilter: synctypes.EventFilter{Limit: &limit}}}},
		skip:    map[string]bool{synctypes.StreamToDevice: true, synctypes.StreamDeviceLists: true},
	}
	if s := q.Get("timeout"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return httpapi.InvalidParam("timeout must be a non-negative number of milliseconds")
		}
		p.timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	if room := q.Get("room_id"); room != "" {
		p.filter.Room.Rooms = []string{room}
	}
	if _, err := a.catchUp(ctx); err != nil {
		return err
	}
	if s := q.Get("from"); s != "" {
		tok, err := synctoken.ParseStream(s)
		if err != nil {
			return httpapi.InvalidParam("Invalid from token")
		}
		p.since = &tok
	} else {
		now, err := a.positions(ctx)
		if err != nil {
			return err
		}
		p.since = &now
	}
	start := p.since.String()
	resp, err := a.longPoll(ctx, dev, p)
	if err != nil {
		return err
	}
	chunk := []json.RawMessage{}
	add := func(room id.RoomID, evs []json.RawMessage) {
		for _, raw := range evs {
			chunk = append(chunk, withRoomID(raw, room))
		}
	}
	for room, jr := range resp.Rooms.Join {
		add(room, jr.Timeline.Events)
		add(room, jr.Ephemeral.Events)
	}
	for room, lr := range resp.Rooms.Leave {
		add(room, lr.Timeline.Events)
	}
	for room, ir := range resp.Rooms.Invite {
		for _, raw := range ir.InviteState.Events {
			var ev struct {
				Type     string `json:"type"`
				StateKey string `json:"state_key"`
			}
			if json.Unmarshal(raw, &ev) == nil && ev.Type == "m.room.member" && ev.StateKey == string(dev.UserID) {
				chunk = append(chunk, withRoomID(raw, room))
			}
		}
	}
	chunk = append(chunk, resp.Presence.Events...)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"start": start, "end": resp.NextBatch, "chunk": chunk})
	return nil
}

// withRoomID adds room_id to an event of a sync response, which leaves it out.
func withRoomID(raw json.RawMessage, room id.RoomID) json.RawMessage {
	return withField(raw, "room_id", room)
}

// withField adds a top-level key to a JSON object that lacks it.
func withField(raw json.RawMessage, key string, value any) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return raw
	}
	if _, ok := m[key]; ok {
		return raw
	}
	v, err := json.Marshal(value)
	if err != nil {
		return raw
	}
	m[key] = v
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
