package clientapi

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/userapi"
)

// Bounds of GET /hierarchy: its page size and how deep it walks. The walk covers local rooms
// only, so the depth bound mostly guards against long chains of nested spaces.
const (
	defaultHierarchyLimit = 50
	maxHierarchyLimit     = 100
	maxHierarchyDepth     = 10
)

// registerHierarchyRoutes adds the space hierarchy endpoint (client-server API, "Spaces").
func (a *API) registerHierarchyRoutes(r *mux.Router) {
	handleV1(r, "/rooms/{roomId}/hierarchy", a.authed(a.hierarchy, guestsAllowed), http.MethodGet)
}

// publicRoom is a room as the published room directory shows it (PublishedRoomsChunk).
type publicRoom struct {
	RoomID           id.RoomID    `json:"room_id"`
	Name             string       `json:"name,omitempty"`
	Topic            string       `json:"topic,omitempty"`
	CanonicalAlias   id.RoomAlias `json:"canonical_alias,omitempty"`
	NumJoinedMembers int          `json:"num_joined_members"`
	WorldReadable    bool         `json:"world_readable"`
	GuestCanJoin     bool         `json:"guest_can_join"`
	AvatarURL        string       `json:"avatar_url,omitempty"`
	JoinRule         string       `json:"join_rule,omitempty"`
	RoomType         string       `json:"room_type,omitempty"`
}

// roomInfo is a room's summary with what the hierarchy needs besides (RoomSummary).
type roomInfo struct {
	publicRoom
	version    id.RoomVersion
	encryption string
	joinRules  auth.JoinRules
	state      *liveState
}

// roomInfo summarises a local room from single lookups of its current state and a count of its
// joined members; ErrRoomNotFound for a room this server does not have.
func (a *API) roomInfo(ctx context.Context, roomID id.RoomID) (*roomInfo, error) {
	version, err := a.rooms.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	st := a.readState(ctx, roomID)
	info := &roomInfo{publicRoom: publicRoom{RoomID: roomID}, version: version, state: st}
	info.Name = contentString(st.event("m.room.name", ""), "name")
	info.Topic = plainTopic(st.event("m.room.topic", ""))
	info.AvatarURL = contentString(st.event("m.room.avatar", ""), "url")
	if alias := id.RoomAlias(contentString(st.event("m.room.canonical_alias", ""), "alias")); validAlias(alias) {
		info.CanonicalAlias = alias
	}
	info.WorldReadable = contentString(st.event("m.room.history_visibility", ""), "history_visibility") == "world_readable"
	info.GuestCanJoin = contentString(st.event("m.room.guest_access", ""), "guest_access") == "can_join"
	info.RoomType = contentString(st.event("m.room.create", ""), "type")
	info.encryption = contentString(st.event("m.room.encryption", ""), "algorithm")
	info.joinRules = auth.LoadJoinRules(st)
	info.JoinRule = info.joinRules.Rule
	if st.err != nil {
		return nil, st.err
	}
	members, err := a.rooms.Members(ctx, roomID, "join")
	if err != nil {
		return nil, err
	}
	info.NumJoinedMembers = len(members)
	return info, nil
}

// plainTopic is the plain-text topic of an m.room.topic event: the text/plain representation of
// m.topic when it has one, none when m.topic has only others, else content.topic.
func plainTopic(ev *pdu.Event) string {
	if ev == nil {
		return ""
	}
	var c struct {
		MTopic *struct {
			Text []struct {
				MimeType *string `json:"mimetype"`
				Body     string  `json:"body"`
			} `json:"m.text"`
		} `json:"m.topic"`
	}
	if json.Unmarshal(ev.Content(), &c) == nil && c.MTopic != nil && c.MTopic.Text != nil {
		for _, t := range c.MTopic.Text {
			if t.MimeType == nil || *t.MimeType == "text/plain" {
				return t.Body
			}
		}
		return ""
	}
	return contentString(ev, "topic")
}

// visibleTo reports whether the hierarchy may show the room to user (space_hierarchy.yaml,
// "rooms"): joined or invited, free to join (public, or restricted with a condition met),
// knockable, or world-readable. Banned users see nothing.
func (a *API) visibleTo(ctx context.Context, info *roomInfo, user id.UserID) (bool, error) {
	m := auth.Membership(info.state, user)
	if info.state.err != nil {
		return false, info.state.err
	}
	switch {
	case m == "ban":
		return false, nil
	case m == "join" || m == "invite" || info.WorldReadable:
		return true, nil
	}
	switch info.joinRules.Rule {
	case "public":
		return true, nil
	case "knock":
		return info.version.Knocks(), nil
	case "knock_restricted":
		return info.version.KnockRestricted(), nil
	case "restricted":
		if !info.version.RestrictedJoins() {
			return false, nil
		}
		for _, c := range info.joinRules.Allow {
			if c.Type != "m.room_membership" {
				continue
			}
			ev, err := a.rooms.StateEvent(ctx, c.RoomID, "m.room.member", string(user))
			if errors.Is(err, roomserver.ErrRoomNotFound) {
				continue
			} else if err != nil {
				return false, err
			}
			if memberOf(ev) == "join" {
				return true, nil
			}
		}
	}
	return false, nil
}

// hierarchyRoom is one room of a /hierarchy page (SpaceHierarchyRoomsChunk).
type hierarchyRoom struct {
	publicRoom
	AllowedRoomIDs []id.RoomID     `json:"allowed_room_ids,omitempty"`
	Encryption     string          `json:"encryption,omitempty"`
	RoomVersion    id.RoomVersion  `json:"room_version"`
	ChildrenState  []strippedChild `json:"children_state"`
}

// strippedChild is an m.space.child event as stripped state with its origin_server_ts.
type strippedChild struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         id.UserID       `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

// spaceChild is a valid m.space.child event of a space: a room ID for a state key and a
// non-empty via (client-server API, "m.space.child").
type spaceChild struct {
	ev        *pdu.Event
	roomID    id.RoomID
	order     string // "" when absent or invalid
	suggested bool
}

// children returns the valid m.space.child events of a space in the spec's order ("Ordering of
// children within a space"): those with a valid order by it, then the rest, ties broken by
// origin_server_ts and then room ID. Only space-rooms have children; other rooms have none.
func (a *API) children(ctx context.Context, info *roomInfo) ([]spaceChild, error) {
	if info.RoomType != "m.space" {
		return nil, nil
	}
	state, err := a.rooms.CurrentState(ctx, info.RoomID)
	if err != nil {
		return nil, err
	}
	var out []spaceChild
	for k, ev := range state {
		if k.Type != "m.space.child" || !strings.HasPrefix(k.StateKey, "!") {
			continue
		}
		var c struct {
			Via       []json.RawMessage `json:"via"`
			Order     json.RawMessage   `json:"order"`
			Suggested json.RawMessage   `json:"suggested"`
		}
		if json.Unmarshal(ev.Content(), &c) != nil || len(c.Via) == 0 {
			continue
		}
		var order string
		if json.Unmarshal(c.Order, &order) != nil || !validChildOrder(order) {
			order = ""
		}
		out = append(out, spaceChild{ev: ev, roomID: id.RoomID(k.StateKey), order: order, suggested: string(c.Suggested) == "true"})
	}
	slices.SortFunc(out, func(x, y spaceChild) int {
		if (x.order != "") != (y.order != "") {
			if x.order != "" {
				return -1
			}
			return 1
		}
		if c := strings.Compare(x.order, y.order); c != 0 {
			return c
		}
		if c := cmp.Compare(x.ev.OriginServerTS(), y.ev.OriginServerTS()); c != 0 {
			return c
		}
		return strings.Compare(string(x.roomID), string(y.roomID))
	})
	return out, nil
}

// validChildOrder checks an m.space.child order: 1 to 50 characters from \x20 to \x7E.
func validChildOrder(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// hierarchyToken is a /hierarchy pagination token: the parameters of the first request, which
// may not change, and how many rooms earlier pages held. Each page walks the tree again from
// the root; the walk is deterministic, so it resumes where the last page ended as long as the
// spaces did not change meanwhile.
type hierarchyToken struct {
	Root      id.RoomID `json:"r"`
	Suggested bool      `json:"s"`
	MaxDepth  int       `json:"d"`
	Offset    int       `json:"o"`
}

func (t hierarchyToken) String() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hierarchyParams reads the query parameters of GET /hierarchy.
func hierarchyParams(r *http.Request, root id.RoomID) (tok hierarchyToken, limit int, err error) {
	q := r.URL.Query()
	tok = hierarchyToken{Root: root, MaxDepth: maxHierarchyDepth}
	switch q.Get("suggested_only") {
	case "", "false":
	case "true":
		tok.Suggested = true
	default:
		return tok, 0, httpapi.InvalidParam("suggested_only must be true or false")
	}
	limit = defaultHierarchyLimit
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit <= 0 {
			return tok, 0, httpapi.InvalidParam("limit must be an integer greater than zero")
		}
		limit = min(limit, maxHierarchyLimit)
	}
	if s := q.Get("max_depth"); s != "" {
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 {
			return tok, 0, httpapi.InvalidParam("max_depth must be a non-negative integer")
		}
		tok.MaxDepth = min(d, maxHierarchyDepth)
	}
	if from := q.Get("from"); from != "" {
		var prev hierarchyToken
		b, err := base64.RawURLEncoding.DecodeString(from)
		if err != nil || json.Unmarshal(b, &prev) != nil || prev.Root != root || prev.Offset < 0 {
			return tok, 0, httpapi.InvalidParam("Unknown pagination token")
		}
		if prev.Suggested != tok.Suggested || prev.MaxDepth != tok.MaxDepth {
			return tok, 0, httpapi.InvalidParam("suggested_only and max_depth cannot change on paginated requests")
		}
		tok.Offset = prev.Offset
	}
	return tok, limit, nil
}

// hierarchy answers GET /rooms/{roomId}/hierarchy (client-server API, "Discovering rooms within
// spaces"): a depth-first walk of the space tree of local rooms from the root, each room once
// (which breaks loops), showing the rooms the user may see and walking into none other.
// Children this server does not have would need federation and are left out.
func (a *API) hierarchy(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	root, err := roomIDVar(r)
	if err != nil {
		return err
	}
	tok, limit, err := hierarchyParams(r, root)
	if err != nil {
		return err
	}
	ctx := r.Context()
	info, err := a.roomInfo(ctx, root)
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return httpapi.Forbidden("You may not view this room")
	} else if err != nil {
		return err
	}
	if ok, err := a.visibleTo(ctx, info, dev.UserID); err != nil {
		return err
	} else if !ok {
		return httpapi.Forbidden("You may not view this room")
	}

	type entry struct {
		roomID id.RoomID
		depth  int
	}
	stack := []entry{{root, 0}}
	seen := map[id.RoomID]bool{}
	rooms := []hierarchyRoom{}
	shown, more := 0, false
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[e.roomID] {
			continue
		}
		seen[e.roomID] = true
		if e.roomID != root {
			if info, err = a.roomInfo(ctx, e.roomID); errors.Is(err, roomserver.ErrRoomNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if ok, err := a.visibleTo(ctx, info, dev.UserID); err != nil {
				return err
			} else if !ok {
				continue
			}
		}
		if len(rooms) == limit {
			more = true // one room beyond the page: there is a next one
			break
		}
		children, err := a.children(ctx, info)
		if err != nil {
			return err
		}
		if shown >= tok.Offset {
			rooms = append(rooms, hierarchyEntry(info, children))
		}
		shown++
		if e.depth < tok.MaxDepth {
			// Pushed last to first, so the first child is walked next.
			for _, c := range slices.Backward(children) {
				if !seen[c.roomID] && (!tok.Suggested || c.suggested) {
					stack = append(stack, entry{c.roomID, e.depth + 1})
				}
			}
		}
	}
	resp := map[string]any{"rooms": rooms}
	if more {
		tok.Offset = shown
		resp["next_batch"] = tok.String()
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// hierarchyEntry is a room of the hierarchy with its children's events.
func hierarchyEntry(info *roomInfo, children []spaceChild) hierarchyRoom {
	h := hierarchyRoom{publicRoom: info.publicRoom, Encryption: info.encryption, RoomVersion: info.version,
		ChildrenState: make([]strippedChild, len(children))}
	if info.JoinRule == "restricted" || info.JoinRule == "knock_restricted" {
		for _, c := range info.joinRules.Allow {
			if c.Type == "m.room_membership" {
				h.AllowedRoomIDs = append(h.AllowedRoomIDs, c.RoomID)
			}
		}
	}
	for i, c := range children {
		h.ChildrenState[i] = strippedChild{Type: c.ev.Type(), StateKey: string(c.roomID), Content: c.ev.Content(),
			Sender: c.ev.Sender(), OriginServerTS: c.ev.OriginServerTS()}
	}
	return h
}
