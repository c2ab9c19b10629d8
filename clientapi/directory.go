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
	"unicode/utf8"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/userapi"
)

// registerDirectoryRoutes adds the room alias and published room directory endpoints
// (client-server API, "Room aliases" and "Published room directory").
//
// Who may change what, where the spec leaves it to the server:
//   - an alias is created by a user joined to its room;
//   - an alias is deleted by its creator, a server admin, or a member who may send
//     m.room.canonical_alias in its room;
//   - a room's directory visibility is set by a server admin or a member who may send
//     m.room.canonical_alias: the same people who curate how the room is addressed.
func (a *API) registerDirectoryRoutes(r *mux.Router) {
	handle(r, "/directory/room/{roomAlias}", httpapi.HandlerFunc(a.getAlias), http.MethodGet)
	handle(r, "/directory/room/{roomAlias}", a.authed(a.putAlias), http.MethodPut)
	handle(r, "/directory/room/{roomAlias}", a.authed(a.deleteAlias), http.MethodDelete)
	handle(r, "/rooms/{roomId}/aliases", a.authed(a.roomAliases, guestsAllowed), http.MethodGet)
	handle(r, "/directory/list/room/{roomId}", httpapi.HandlerFunc(a.getVisibility), http.MethodGet)
	handle(r, "/directory/list/room/{roomId}", a.authed(a.setVisibility), http.MethodPut)
	handle(r, "/publicRooms", httpapi.HandlerFunc(a.getPublicRooms), http.MethodGet)
	handle(r, "/publicRooms", a.authed(a.postPublicRooms, guestsAllowed), http.MethodPost)
}

// aliasVar returns the {roomAlias} of the path, M_INVALID_PARAM if it is not a room alias
// (appendices, "Room Aliases": any code points but ":" and NUL in the localpart).
func aliasVar(r *http.Request) (id.RoomAlias, error) {
	s := httpapi.Vars(r)["roomAlias"]
	alias := id.RoomAlias(s)
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) || !validAlias(alias) || !id.ValidateServerName(aliasServer(alias)) {
		return "", httpapi.InvalidParam("%q is not a valid room alias", s)
	}
	return alias, nil
}

// getAlias answers GET /directory/room/{roomAlias}.
func (a *API) getAlias(w http.ResponseWriter, r *http.Request) error {
	alias, err := aliasVar(r)
	if err != nil {
		return err
	}
	if aliasServer(alias) != a.cfg.ServerName {
		return httpapi.NotFound("Room alias %s is on another server, and this server does not federate yet", alias)
	}
	target, err := a.rooms.ResolveAlias(r.Context(), alias)
	if err != nil {
		return roomError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"room_id": target.RoomID, "servers": a.roomServers(r.Context(), target.RoomID)})
	return nil
}

// roomServers lists the servers that can be joined through: this one first, then the servers
// of the other joined members, sorted.
func (a *API) roomServers(ctx context.Context, roomID id.RoomID) []string {
	servers := []string{a.cfg.ServerName}
	members, err := a.rooms.Members(ctx, roomID, "join")
	if err != nil {
		return servers
	}
	var others []string
	for _, u := range members {
		if s := u.Homeserver(); s != "" && s != a.cfg.ServerName && !slices.Contains(others, s) {
			others = append(others, s)
		}
	}
	slices.Sort(others)
	return append(servers, others...)
}

// putAlias answers PUT /directory/room/{roomAlias}.
func (a *API) putAlias(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	alias, err := aliasVar(r)
	if err != nil {
		return err
	}
	var body struct {
		RoomID *string `json:"room_id"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if body.RoomID == nil {
		return httpapi.MissingParam("room_id is required")
	}
	if !validRoomID(*body.RoomID) {
		return httpapi.InvalidParam("%q is not a room ID", *body.RoomID)
	}
	if aliasServer(alias) != a.cfg.ServerName {
		return httpapi.InvalidParam("Aliases can only be created on this server (%s)", a.cfg.ServerName)
	}
	ctx := r.Context()
	roomID := id.RoomID(*body.RoomID)
	m, err := a.membership(ctx, roomID, dev.UserID)
	if err != nil {
		return err
	}
	if m != "join" {
		return httpapi.Forbidden("You must be joined to the room to give it an alias")
	}
	err = a.rooms.CreateAlias(ctx, roomserver.Alias{Alias: alias, RoomID: roomID, Creator: dev.UserID})
	if errors.Is(err, roomserver.ErrAliasTaken) {
		// 409 per the spec's PUT /directory/room; the code is the one createRoom uses for it.
		return httpapi.NewError(http.StatusConflict, "M_ROOM_IN_USE", "Room alias %s already exists", alias)
	}
	if err != nil {
		return roomError(err)
	}
	writeEmpty(w)
	return nil
}

// deleteAlias answers DELETE /directory/room/{roomAlias}. Like the spec suggests, the alias is
// also taken out of the room's m.room.canonical_alias when the user may change it.
func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	alias, err := aliasVar(r)
	if err != nil {
		return err
	}
	if aliasServer(alias) != a.cfg.ServerName {
		return httpapi.NotFound("Room alias %s is not an alias of this server", alias)
	}
	ctx := r.Context()
	target, err := a.rooms.ResolveAlias(ctx, alias)
	if err != nil {
		return roomError(err)
	}
	if target.Creator != dev.UserID && !dev.IsAdmin {
		ok, err := a.maySendState(ctx, target.RoomID, dev.UserID, "m.room.canonical_alias")
		if err != nil && !errors.Is(err, roomserver.ErrRoomNotFound) {
			return err
		}
		if !ok {
			return httpapi.Forbidden("Only the alias's creator, a server admin or a room moderator may delete it")
		}
	}
	if err := a.rooms.DeleteAlias(ctx, alias); err != nil {
		return roomError(err)
	}
	a.dropCanonicalAlias(ctx, dev.UserID, target.RoomID, func(s string) bool { return s == string(alias) })
	writeEmpty(w)
	return nil
}

// dropCanonicalAlias removes the aliases drop selects from the room's m.room.canonical_alias,
// sent by user. It is best effort: a user without the power to change the event, or a room
// that is gone, leaves it as it is.
func (a *API) dropCanonicalAlias(ctx context.Context, user id.UserID, roomID id.RoomID, drop func(string) bool) {
	ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil || ev == nil {
		return
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content(), &c) != nil {
		return
	}
	changed := false
	var main string
	if json.Unmarshal(c["alias"], &main) == nil && drop(main) {
		delete(c, "alias")
		changed = true
	}
	var alt []string
	if json.Unmarshal(c["alt_aliases"], &alt) == nil && slices.ContainsFunc(alt, drop) {
		c["alt_aliases"], _ = json.Marshal(slices.DeleteFunc(alt, drop))
		changed = true
	}
	if !changed {
		return
	}
	content, _ := json.Marshal(c)
	sk := ""
	_, err = a.rooms.Send(ctx, roomID, roomserver.Template{Type: "m.room.canonical_alias", StateKey: &sk, Sender: user, Content: content})
	if err != nil && !errors.Is(err, roomserver.ErrNotAllowed) {
		a.log.Warn("update canonical alias", "room_id", roomID, "error", err)
	}
}

// roomAliases answers GET /rooms/{roomId}/aliases: for joined members, anyone when the room is
// world-readable, and server admins. An unknown room is answered like a room the user may not
// see, as the spec lists no other error.
func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if !dev.IsAdmin {
		st := a.readState(ctx, roomID)
		visible := auth.Membership(st, dev.UserID) == "join" || contentString(st.event("m.room.history_visibility", ""), "history_visibility") == "world_readable"
		if errors.Is(st.err, roomserver.ErrRoomNotFound) || (st.err == nil && !visible) {
			return httpapi.Forbidden("You are not a member of this room")
		}
		if st.err != nil {
			return st.err
		}
	}
	aliases, err := a.rooms.RoomAliases(ctx, roomID)
	if err != nil {
		return err
	}
	if aliases == nil {
		aliases = []id.RoomAlias{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"aliases": aliases})
	return nil
}

// getVisibility answers GET /directory/list/room/{roomId}.
func (a *API) getVisibility(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	if _, err := a.rooms.RoomVersion(r.Context(), roomID); err != nil {
		return roomError(err)
	}
	published, err := a.rooms.Published(r.Context(), roomID)
	if err != nil {
		return err
	}
	visibility := "private"
	if published {
		visibility = "public"
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"visibility": visibility})
	return nil
}

// setVisibility answers PUT /directory/list/room/{roomId}.
func (a *API) setVisibility(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	visibility := "public" // the spec's default
	if body.Visibility != nil {
		visibility = *body.Visibility
	}
	if visibility != "public" && visibility != "private" {
		return httpapi.InvalidParam("visibility must be public or private")
	}
	ctx := r.Context()
	if _, err := a.rooms.RoomVersion(ctx, roomID); err != nil {
		return roomError(err)
	}
	if !dev.IsAdmin {
		ok, err := a.maySendState(ctx, roomID, dev.UserID, "m.room.canonical_alias")
		if err != nil {
			return roomError(err)
		}
		if !ok {
			return httpapi.Forbidden("Only a server admin or a room moderator may change the room's directory visibility")
		}
	}
	if err := a.rooms.SetPublished(ctx, roomID, visibility == "public"); err != nil {
		return roomError(err)
	}
	writeEmpty(w)
	return nil
}

// liveState lets the auth rules' readers (power levels, membership, join rules) read single
// pieces of a room's current state through the roomserver's cache, so that checks needing a few
// events do not copy the whole state. The first error is kept in err.
type liveState struct {
	ctx    context.Context
	rooms  roomserver.API
	roomID id.RoomID
	err    error
}

func (a *API) readState(ctx context.Context, roomID id.RoomID) *liveState {
	return &liveState{ctx: ctx, rooms: a.rooms, roomID: roomID}
}

// event returns one piece of the current state, nil if absent or on error.
func (s *liveState) event(typ, stateKey string) *pdu.Event {
	if s.err != nil {
		return nil
	}
	ev, err := s.rooms.StateEvent(s.ctx, s.roomID, typ, stateKey)
	if err != nil {
		s.err = err
		return nil
	}
	return ev
}

// Get implements auth.State; absent state is a nil interface, not a nil *pdu.Event.
func (s *liveState) Get(typ, stateKey string) auth.Event {
	if ev := s.event(typ, stateKey); ev != nil {
		return ev
	}
	return nil
}

// maySendState reports whether user is joined to the room with the power to send a state event
// of type typ (the room version's authorisation rules 6 and 8).
func (a *API) maySendState(ctx context.Context, roomID id.RoomID, user id.UserID, typ string) (bool, error) {
	st := a.readState(ctx, roomID)
	ok := auth.Membership(st, user) == "join" && auth.UserPowerLevel(st, user) >= auth.RequiredPowerLevel(st, typ, true)
	if st.err != nil {
		return false, st.err
	}
	return ok, nil
}

// contentString is the string content[key] of an event, "" if absent or not a string.
func contentString(ev *pdu.Event, key string) string {
	if ev == nil {
		return ""
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content(), &c) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(c[key], &s) != nil {
		return ""
	}
	return s
}

// Bounds of a page of the published room directory.
const (
	defaultPublicRoomsLimit = 100
	maxPublicRoomsLimit     = 500
)

// publicRoomsQuery is what GET and POST /publicRooms ask for.
type publicRoomsQuery struct {
	limit       int
	since       string
	search      string
	roomTypes   []*string // nil or empty: any type; a nil entry: rooms without a type
	thirdParty  string
	allNetworks bool
}

// checkDirectoryServer accepts the server parameter of /publicRooms when it names this server:
// other servers' directories need federation, which Lattice does not speak yet.
func (a *API) checkDirectoryServer(server string) error {
	switch {
	case server == "" || server == a.cfg.ServerName:
		return nil
	case !id.ValidateServerName(server):
		return httpapi.InvalidParam("%q is not a server name", server)
	}
	return httpapi.NotFound("The directory of %s needs federation, which this server does not speak yet", server)
}

// getPublicRooms answers GET /publicRooms, which needs no access token.
func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := a.checkDirectoryServer(q.Get("server")); err != nil {
		return err
	}
	query := publicRoomsQuery{since: q.Get("since"), thirdParty: q.Get("third_party_instance_id")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return httpapi.InvalidParam("limit must be a non-negative integer")
		}
		query.limit = n
	}
	// Not in the spec's GET parameters, but clients send them there too.
	switch q.Get("include_all_networks") {
	case "", "false":
	case "true":
		query.allNetworks = true
	default:
		return httpapi.InvalidParam("include_all_networks must be true or false")
	}
	return a.answerPublicRooms(r.Context(), w, query)
}

// postPublicRooms answers POST /publicRooms, with its filter.
func (a *API) postPublicRooms(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := a.checkDirectoryServer(r.URL.Query().Get("server")); err != nil {
		return err
	}
	var body struct {
		Limit  *int   `json:"limit"`
		Since  string `json:"since"`
		Filter *struct {
			GenericSearchTerm string    `json:"generic_search_term"`
			RoomTypes         []*string `json:"room_types"`
		} `json:"filter"`
		IncludeAllNetworks   bool   `json:"include_all_networks"`
		ThirdPartyInstanceID string `json:"third_party_instance_id"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	query := publicRoomsQuery{since: body.Since, thirdParty: body.ThirdPartyInstanceID, allNetworks: body.IncludeAllNetworks}
	if body.Limit != nil {
		if *body.Limit < 0 {
			return httpapi.InvalidParam("limit must not be negative")
		}
		query.limit = *body.Limit
	}
	if body.Filter != nil {
		query.search, query.roomTypes = body.Filter.GenericSearchTerm, body.Filter.RoomTypes
	}
	return a.answerPublicRooms(r.Context(), w, query)
}

// answerPublicRooms lists the published rooms that match q, most joined members first, then by
// room ID (the order the spec recommends), one page at a time.
//
// Every request summarises every published room: the order follows joined member counts, which
// change all the time. A summary is a dozen single-event lookups and a member count on the
// roomserver's cached state, never a copy of it, though a room outside the cache is loaded into
// it first. A directory of many thousands of rooms would want a summary table kept by the
// roomserver instead.
func (a *API) answerPublicRooms(ctx context.Context, w http.ResponseWriter, q publicRoomsQuery) error {
	if q.allNetworks && q.thirdParty != "" {
		return httpapi.InvalidParam("third_party_instance_id can only be used when include_all_networks is false")
	}
	if q.limit == 0 {
		q.limit = defaultPublicRoomsLimit
	}
	q.limit = min(q.limit, maxPublicRoomsLimit)
	var key *directoryToken
	if q.since != "" {
		t, err := parseDirectoryToken(q.since)
		if err != nil {
			return err
		}
		key = t
	}
	rooms := []publicRoom{}
	// No application service bridges a third-party network here, so a network's directory is empty.
	if q.thirdParty == "" {
		ids, err := a.rooms.PublishedRooms(ctx)
		if err != nil {
			return err
		}
		for _, roomID := range ids {
			info, err := a.roomInfo(ctx, roomID)
			if errors.Is(err, roomserver.ErrRoomNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if q.matches(&info.publicRoom) {
				rooms = append(rooms, info.publicRoom)
			}
		}
	}
	slices.SortFunc(rooms, func(x, y publicRoom) int {
		return directoryOrder(x.NumJoinedMembers, x.RoomID, y.NumJoinedMembers, y.RoomID)
	})

	// cmpKey places a room before (<0) or after (>0) the token's room.
	cmpKey := func(p publicRoom) int { return directoryOrder(p.NumJoinedMembers, p.RoomID, key.Joined, key.RoomID) }
	start, end := 0, 0
	switch {
	case key == nil:
		end = min(len(rooms), q.limit)
	case key.Back:
		end = firstIndex(rooms, func(p publicRoom) bool { return cmpKey(p) >= 0 })
		start = max(0, end-q.limit)
	default:
		start = firstIndex(rooms, func(p publicRoom) bool { return cmpKey(p) > 0 })
		end = min(len(rooms), start+q.limit)
	}
	page := rooms[start:end]
	resp := map[string]any{"chunk": page, "total_room_count_estimate": len(rooms)}
	if len(page) > 0 && end < len(rooms) {
		last := page[len(page)-1]
		resp["next_batch"] = directoryToken{Joined: last.NumJoinedMembers, RoomID: last.RoomID}.String()
	}
	if len(page) > 0 && start > 0 {
		resp["prev_batch"] = directoryToken{Back: true, Joined: page[0].NumJoinedMembers, RoomID: page[0].RoomID}.String()
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// matches reports whether a room passes the query's filter: its type among room_types, and the
// search term in its name, topic or canonical alias, ignoring case.
func (q *publicRoomsQuery) matches(p *publicRoom) bool {
	if len(q.roomTypes) > 0 && !slices.ContainsFunc(q.roomTypes, func(t *string) bool {
		return (t == nil && p.RoomType == "") || (t != nil && *t == p.RoomType)
	}) {
		return false
	}
	term := strings.ToLower(strings.TrimSpace(q.search))
	if term == "" {
		return true
	}
	for _, s := range []string{p.Name, p.Topic, string(p.CanonicalAlias)} {
		if strings.Contains(strings.ToLower(s), term) {
			return true
		}
	}
	return false
}

// firstIndex is the index of the first element that satisfies f, len(s) if none does.
func firstIndex[T any](s []T, f func(T) bool) int {
	if i := slices.IndexFunc(s, f); i >= 0 {
		return i
	}
	return len(s)
}

// directoryOrder compares two rooms in the directory's order: more joined members first, then
// by room ID.
func directoryOrder(joinedX int, roomX id.RoomID, joinedY int, roomY id.RoomID) int {
	if joinedX != joinedY {
		return cmp.Compare(joinedY, joinedX)
	}
	return strings.Compare(string(roomX), string(roomY))
}

// directoryToken is a /publicRooms pagination token: the room a page ends (next_batch) or
// starts (prev_batch, Back) at. Naming a place in the order rather than an offset keeps pages
// from repeating or skipping rooms when rooms are published or unpublished meanwhile.
type directoryToken struct {
	Back   bool      `json:"b,omitempty"`
	Joined int       `json:"n"`
	RoomID id.RoomID `json:"r"`
}

// String encodes the token for clients, who treat it as opaque.
func (t directoryToken) String() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseDirectoryToken(s string) (*directoryToken, error) {
	var t directoryToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || !strings.HasPrefix(string(t.RoomID), "!") {
		return nil, httpapi.InvalidParam("Invalid pagination token")
	}
	return &t, nil
}
