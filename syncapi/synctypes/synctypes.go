// Package synctypes holds what the parts of /sync share: the response body (client-server API,
// "GET /_matrix/client/v3/sync"), the request as each part sees it, and the Source interface
// through which each stream besides the room timelines (account data, receipts, typing,
// to-device, presence, device lists) fills its sections.
package synctypes

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// Request is one /sync call as the sources see it.
type Request struct {
	User   id.UserID
	Device id.DeviceID
	// Joined lists the rooms the user is joined to at the response's positions; the ephemeral
	// sources (typing, receipts) fill these rooms only.
	Joined []id.RoomID
	// NewlyJoined lists the rooms of Joined that the user joined after the token's position:
	// sources give them everything current, as on an initial sync.
	NewlyJoined []id.RoomID
	// Initial is true for a sync without since, or with full_state.
	Initial bool
	// Filter is the sync filter in effect.
	Filter *Filter
}

// Filter is a sync filter (client-server API, "Filtering").
type Filter struct {
	Presence    *EventFilter `json:"presence,omitempty"`
	AccountData *EventFilter `json:"account_data,omitempty"`
	Room        *RoomFilter  `json:"room,omitempty"`
	EventFields []string     `json:"event_fields,omitempty"`
	EventFormat string       `json:"event_format,omitempty"`
}

// EventFilter is the spec's EventFilter.
type EventFilter struct {
	Limit      *int     `json:"limit,omitempty"`
	Types      []string `json:"types,omitempty"`
	NotTypes   []string `json:"not_types,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	NotSenders []string `json:"not_senders,omitempty"`
}

// RoomFilter is the spec's RoomFilter.
type RoomFilter struct {
	Rooms        []string         `json:"rooms,omitempty"`
	NotRooms     []string         `json:"not_rooms,omitempty"`
	IncludeLeave bool             `json:"include_leave,omitempty"`
	Timeline     *RoomEventFilter `json:"timeline,omitempty"`
	State        *RoomEventFilter `json:"state,omitempty"`
	Ephemeral    *RoomEventFilter `json:"ephemeral,omitempty"`
	AccountData  *RoomEventFilter `json:"account_data,omitempty"`
}

// RoomEventFilter is the spec's RoomEventFilter.
type RoomEventFilter struct {
	EventFilter
	Rooms                     []string `json:"rooms,omitempty"`
	NotRooms                  []string `json:"not_rooms,omitempty"`
	ContainsURL               *bool    `json:"contains_url,omitempty"`
	LazyLoadMembers           bool     `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers   bool     `json:"include_redundant_members,omitempty"`
	UnreadThreadNotifications bool     `json:"unread_thread_notifications,omitempty"`
}

// Source is one stream of the sync token besides the room timelines.
type Source interface {
	// Stream is the stream's name, under which it wakes the notifier.
	Stream() string
	// Position is the stream's latest position; it must be cheap (kept in memory).
	Position(ctx context.Context) (int64, error)
	// Collect adds to resp what the stream holds for the request's user and device after
	// position from up to and including position to.
	Collect(ctx context.Context, req *Request, from, to int64, resp *Response) error
}

// Response is the body of GET /sync.
type Response struct {
	NextBatch                    string         `json:"next_batch"`
	Rooms                        Rooms          `json:"rooms"`
	AccountData                  Events         `json:"account_data"`
	Presence                     Events         `json:"presence"`
	ToDevice                     Events         `json:"to_device"`
	DeviceLists                  DeviceLists    `json:"device_lists"`
	DeviceOneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	DeviceUnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// NewResponse returns an empty response with every section present, as clients expect.
func NewResponse() *Response {
	return &Response{
		Rooms: Rooms{Join: map[id.RoomID]*JoinedRoom{}, Invite: map[id.RoomID]*InvitedRoom{},
			Leave: map[id.RoomID]*LeftRoom{}, Knock: map[id.RoomID]*KnockedRoom{}},
		AccountData: Events{Events: []json.RawMessage{}}, Presence: Events{Events: []json.RawMessage{}},
		ToDevice: Events{Events: []json.RawMessage{}}, DeviceLists: DeviceLists{Changed: []id.UserID{}, Left: []id.UserID{}},
		DeviceOneTimeKeysCount: map[string]int{}, DeviceUnusedFallbackKeyTypes: []string{},
	}
}

// Events is a list of events under "events".
type Events struct {
	Events []json.RawMessage `json:"events"`
}

// Add appends an event, encoding it if it is not JSON already.
func (e *Events) Add(ev any) {
	if raw, ok := ev.(json.RawMessage); ok {
		e.Events = append(e.Events, raw)
		return
	}
	raw, err := json.Marshal(ev)
	if err == nil {
		e.Events = append(e.Events, raw)
	}
}

// DeviceLists is the device_lists section.
type DeviceLists struct {
	Changed []id.UserID `json:"changed"`
	Left    []id.UserID `json:"left"`
}

// Rooms is the rooms section.
type Rooms struct {
	Join   map[id.RoomID]*JoinedRoom  `json:"join"`
	Invite map[id.RoomID]*InvitedRoom `json:"invite"`
	Leave  map[id.RoomID]*LeftRoom    `json:"leave"`
	Knock  map[id.RoomID]*KnockedRoom `json:"knock"`
}

// JoinedRoom is one room of rooms.join.
type JoinedRoom struct {
	Summary                   Summary                        `json:"summary"`
	Timeline                  Timeline                       `json:"timeline"`
	State                     Events                         `json:"state"`
	Ephemeral                 Events                         `json:"ephemeral"`
	AccountData               Events                         `json:"account_data"`
	UnreadNotifications       UnreadNotifications            `json:"unread_notifications"`
	UnreadThreadNotifications map[string]UnreadNotifications `json:"unread_thread_notifications"`
}

// NewJoinedRoom returns a joined room with every part present.
func NewJoinedRoom() *JoinedRoom {
	return &JoinedRoom{Timeline: Timeline{Events: []json.RawMessage{}}, State: Events{Events: []json.RawMessage{}},
		Ephemeral: Events{Events: []json.RawMessage{}}, AccountData: Events{Events: []json.RawMessage{}},
		UnreadThreadNotifications: map[string]UnreadNotifications{}}
}

// JoinedRoom returns the response's entry for a joined room, adding it when absent.
func (r *Response) JoinedRoom(roomID id.RoomID) *JoinedRoom {
	jr := r.Rooms.Join[roomID]
	if jr == nil {
		jr = NewJoinedRoom()
		r.Rooms.Join[roomID] = jr
	}
	return jr
}

// Summary is a joined room's summary.
type Summary struct {
	Heroes             []id.UserID `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int        `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int        `json:"m.invited_member_count,omitempty"`
}

// UnreadNotifications holds a room's or thread's notification counts (filled by push).
type UnreadNotifications struct {
	HighlightCount    int `json:"highlight_count"`
	NotificationCount int `json:"notification_count"`
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch,omitempty"`
}

// InvitedRoom is one room of rooms.invite.
type InvitedRoom struct {
	InviteState Events `json:"invite_state"`
}

// KnockedRoom is one room of rooms.knock.
type KnockedRoom struct {
	KnockState Events `json:"knock_state"`
}

// LeftRoom is one room of rooms.leave.
type LeftRoom struct {
	State       Events   `json:"state"`
	Timeline    Timeline `json:"timeline"`
	AccountData Events   `json:"account_data"`
}

// Stream names of the sync token's positions besides the room timelines, in token order.
const (
	StreamAccountData = "account_data"
	StreamReceipts    = "receipts"
	StreamTyping      = "typing"
	StreamToDevice    = "to_device"
	StreamPresence    = "presence"
	StreamDeviceLists = "device_lists"
	// StreamKeyCounts moves when a claim takes a device's one-time or fallback key
	// (userapi.StreamKeyCounts); its source fills the device's key counts on every response.
	StreamKeyCounts = "key_counts"
)

// TokenOrder is the order of the streams in a sync token after the room timelines; a stream is
// only ever added at the end, so older tokens stay readable.
var TokenOrder = []string{StreamAccountData, StreamReceipts, StreamTyping, StreamToDevice, StreamPresence, StreamDeviceLists, StreamKeyCounts}

// StreamTimeline is the stream the sync component's consumer wakes after storing timeline
// events, with the keys of the rooms (roomserver.RoomKey) and of the users whose membership
// changed (userapi.UserKey).
const StreamTimeline = "sync_timeline"

// ReceiptsKey is woken with every move of StreamReceipts, for the push sender's badge updates.
const ReceiptsKey = "sync:receipts"

// TimelineKey is woken with every move of StreamTimeline, for consumers of the stored
// timelines as a whole (the push sender).
const TimelineKey = "sync:timeline"

// LimitedSource is a Source that may deliver only the start of (from, to], to keep responses
// small; it returns the position it reached, which the response's token then carries, so the
// next sync continues from there at once.
type LimitedSource interface {
	CollectLimited(ctx context.Context, req *Request, from, to int64, resp *Response) (int64, error)
}

// Acknowledger is a Source that deletes what a client confirmed having received by presenting
// a token: the sync core calls it when nothing new is collected for the token.
type Acknowledger interface {
	Acknowledge(ctx context.Context, req *Request, since int64) error
}

// Empty reports whether a response carries nothing for the client.
func (r *Response) Empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 && len(r.Rooms.Knock) == 0 &&
		len(r.AccountData.Events) == 0 && len(r.Presence.Events) == 0 && len(r.ToDevice.Events) == 0 &&
		len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0
}
