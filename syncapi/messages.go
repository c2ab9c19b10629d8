package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/userapi"
)

const (
	defaultMessagesLimit = 10
	maxMessagesLimit     = 1000
	// maxScanFactor bounds how many events one page reads, as a multiple of its limit, when
	// filters or history visibility hide most of them; the page then ends early with a token.
	maxScanFactor = 20
)

// roomIDVar returns the {roomId} of the path.
func roomIDVar(r *http.Request) (id.RoomID, error) {
	s := httpapi.Vars(r)["roomId"]
	if !strings.HasPrefix(s, "!") || len(s) > 255 {
		return "", httpapi.InvalidParam("%q is not a room ID", s)
	}
	return id.RoomID(s), nil
}

// access returns the viewer of a room for a user who may read its history: one who is or was
// in the room (and has not forgotten it), or anyone when the room is world-readable now.
func (a *API) access(ctx context.Context, roomID id.RoomID, user id.UserID) (*viewer, error) {
	if _, err := a.catchUp(ctx); err != nil {
		return nil, err
	}
	v, err := a.viewerOf(ctx, string(roomID), string(user))
	if err != nil {
		return nil, err
	}
	if v.everMember() {
		forgot, err := a.store.Forgotten(ctx, a.db, string(user), string(roomID))
		if err != nil {
			return nil, err
		}
		if !forgot {
			return v, nil
		}
	}
	if vis, err := a.currentVisibility(ctx, a.db, string(roomID), math.MaxInt64); err == nil && vis == "world_readable" {
		if _, err := a.rooms.RoomVersion(ctx, roomID); err == nil {
			return v, nil
		}
	}
	return nil, httpapi.Forbidden("You are not allowed to read this room's history")
}

// parsePoint reads a /messages token as a point of the room's order.
func (a *API) parsePoint(ctx context.Context, roomID id.RoomID, tok string) (syncstore.Point, error) {
	if strings.HasPrefix(tok, "t") {
		t, err := synctoken.ParseTopo(tok)
		if err != nil {
			return syncstore.Point{}, httpapi.InvalidParam("Invalid pagination token")
		}
		return syncstore.Point{Depth: t.Depth, Pos: t.Stream}, nil
	}
	s, err := synctoken.ParseStream(tok)
	if err != nil {
		return syncstore.Point{}, httpapi.InvalidParam("Invalid pagination token")
	}
	p, ok, err := a.store.LastPointAt(ctx, a.db, string(roomID), s.Rooms)
	if err != nil {
		return syncstore.Point{}, err
	}
	if !ok {
		return syncstore.Point{}, nil // before the room's first event
	}
	return p, nil
}

func pointToken(p syncstore.Point) string {
	return synctoken.Topo{Depth: p.Depth, Stream: p.Pos}.String()
}

// page reads up to limit visible events that pass the filter from a point in one direction,
// stopping at to (if set). more reports whether events may remain; next is the point after the
// last event read.
func (a *API) page(ctx context.Context, roomID id.RoomID, v *viewer, f *roomEventFilter, from syncstore.Point, to *syncstore.Point,
	backwards bool, limit int) (out []*syncstore.Event, next syncstore.Point, more bool, err error) {
	next = from
	if limit == 0 {
		return nil, next, true, nil
	}
	scanned, batch := 0, min(max(limit*2, 50), 500)
	for len(out) < limit {
		evs, err := a.store.Range(ctx, a.db, string(roomID), next, backwards, batch)
		if err != nil {
			return nil, next, false, err
		}
		for _, e := range evs {
			if to != nil && pastTo(e, *to, backwards) {
				return out, next, false, nil
			}
			if backwards {
				next = syncstore.Point{Depth: e.Depth, Pos: e.Pos - 1}
			} else {
				next = syncstore.Point{Depth: e.Depth, Pos: e.Pos}
			}
			scanned++
			if f.matches(e) && v.canSee(e) {
				out = append(out, e)
				if len(out) == limit {
					return out, next, true, nil
				}
			}
		}
		if len(evs) < batch {
			return out, next, false, nil
		}
		if scanned >= limit*maxScanFactor {
			return out, next, true, nil
		}
	}
	return out, next, true, nil
}

// pastTo reports whether e lies beyond the to point of a page.
func pastTo(e *syncstore.Event, to syncstore.Point, backwards bool) bool {
	if backwards {
		return e.Depth < to.Depth || (e.Depth == to.Depth && e.Pos <= to.Pos)
	}
	return e.Depth > to.Depth || (e.Depth == to.Depth && e.Pos > to.Pos)
}

// renderAll renders events for a device.
func renderAll(evs []*syncstore.Event, dev *userapi.Device) []json.RawMessage {
	now := time.Now().UnixMilli()
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		out[i] = render(e, string(dev.UserID), string(dev.DeviceID), now, "")
	}
	return out
}

// messages answers GET /rooms/{roomId}/messages (client-server API, "GET
// /_matrix/client/v3/rooms/{roomId}/messages").
func (a *API) messages(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		return httpapi.InvalidParam("dir must be b or f")
	}
	backwards := dir == "b"
	limit := defaultMessagesLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return httpapi.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, maxMessagesLimit)
	}
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		return err
	}
	if f.Limit != nil {
		limit = min(limit, *f.Limit)
	}
	ctx := r.Context()
	v, err := a.access(ctx, roomID, dev.UserID)
	if err != nil {
		return err
	}
	from := syncstore.Point{Depth: math.MaxInt64, Pos: math.MaxInt64}
	if !backwards {
		from = syncstore.Point{}
	}
	if tok := q.Get("from"); tok != "" {
		if from, err = a.parsePoint(ctx, roomID, tok); err != nil {
			return err
		}
	} else if backwards {
		// The room's present: a client without a token starts from its latest event.
		if p, ok, err := a.store.LastPointAt(ctx, a.db, string(roomID), math.MaxInt64); err != nil {
			return err
		} else if ok {
			from = p
		}
	}
	var to *syncstore.Point
	if tok := q.Get("to"); tok != "" {
		p, err := a.parsePoint(ctx, roomID, tok)
		if err != nil {
			return err
		}
		to = &p
	}
	evs, next, more, err := a.page(ctx, roomID, v, f, from, to, backwards, limit)
	if err != nil {
		return err
	}
	chunk, err := a.renderAggregated(ctx, evs, dev, v)
	if err != nil {
		return err
	}
	resp := map[string]any{"start": pointToken(from), "chunk": chunk}
	// end is left out only once a page comes back empty: a client that pages until end is
	// missing then sees the room's start as one empty page, as with other servers, and a
	// page that happens to reach the start still tells where it stopped.
	if len(evs) > 0 || more && limit == 0 {
		resp["end"] = pointToken(next)
	}
	if f.LazyLoadMembers && len(evs) > 0 {
		state, err := a.memberState(ctx, roomID, evs)
		if err != nil {
			return err
		}
		resp["state"] = state
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// memberState returns the current member events of the senders of evs, for lazy-loading
// clients (client-server API, "Lazy-loading room members").
func (a *API) memberState(ctx context.Context, roomID id.RoomID, evs []*syncstore.Event) ([]any, error) {
	seen := map[string]bool{}
	out := []any{}
	for _, e := range evs {
		if seen[e.Sender] {
			continue
		}
		seen[e.Sender] = true
		ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.member", e.Sender)
		if err != nil {
			return nil, err
		}
		if ev != nil {
			out = append(out, ev.Client(nil))
		}
	}
	return out, nil
}

// visibleEvent returns a stored event of the room that the viewer may see, M_NOT_FOUND
// otherwise (the spec does not let servers reveal events a user cannot see).
func (a *API) visibleEvent(ctx context.Context, roomID id.RoomID, eventID string, v *viewer) (*syncstore.Event, error) {
	e, err := a.store.EventByID(ctx, a.db, eventID)
	if err != nil {
		return nil, err
	}
	if e == nil || e.RoomID != string(roomID) || !v.canSee(e) {
		return nil, httpapi.NotFound("Event not found")
	}
	return e, nil
}

// event answers GET /rooms/{roomId}/event/{eventId}.
func (a *API) event(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	v, err := a.access(r.Context(), roomID, dev.UserID)
	var he *httpapi.Error
	if errors.As(err, &he) && he.Status == http.StatusForbidden {
		return httpapi.NotFound("Event not found")
	} else if err != nil {
		return err
	}
	e, err := a.visibleEvent(r.Context(), roomID, httpapi.Vars(r)["eventId"], v)
	if err != nil {
		return err
	}
	extra, err := a.aggregations(r.Context(), e, v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(render(e, string(dev.UserID), string(dev.DeviceID), time.Now().UnixMilli(), extra))
	return nil
}

// context answers GET /rooms/{roomId}/context/{eventId}.
func (a *API) context(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := defaultMessagesLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return httpapi.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, maxMessagesLimit)
	}
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		return err
	}
	ctx := r.Context()
	v, err := a.access(ctx, roomID, dev.UserID)
	if err != nil {
		return err
	}
	e, err := a.visibleEvent(ctx, roomID, httpapi.Vars(r)["eventId"], v)
	if err != nil {
		return err
	}
	before, after := limit/2, limit-limit/2
	at := syncstore.Point{Depth: e.Depth, Pos: e.Pos}
	evsBefore, start, _, err := a.page(ctx, roomID, v, f, syncstore.Point{Depth: e.Depth, Pos: e.Pos - 1}, nil, true, before)
	if err != nil {
		return err
	}
	evsAfter, end, _, err := a.page(ctx, roomID, v, f, at, nil, false, after)
	if err != nil {
		return err
	}
	last := e
	if len(evsAfter) > 0 {
		last = evsAfter[len(evsAfter)-1]
	}
	state, err := a.rooms.StateAfter(ctx, id.EventID(last.EventID))
	if err != nil {
		return err
	}
	senders := map[string]bool{e.Sender: true}
	for _, x := range append(evsBefore, evsAfter...) {
		senders[x.Sender] = true
	}
	stateOut := []any{}
	for k, ev := range state {
		if f.LazyLoadMembers && k.Type == "m.room.member" && !senders[k.StateKey] {
			continue
		}
		stateOut = append(stateOut, ev.Client(nil))
	}
	rendered, err := a.renderAggregated(ctx, append(append([]*syncstore.Event{e}, evsBefore...), evsAfter...), dev, v)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"event":         rendered[0],
		"events_before": rendered[1 : 1+len(evsBefore)],
		"events_after":  rendered[1+len(evsBefore):],
		"start":         pointToken(start),
		"end":           pointToken(end),
		"state":         stateOut,
	})
	return nil
}

// forget answers POST /rooms/{roomId}/forget: the room's history is no longer served to a user
// who has left it.
func (a *API) forget(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.member", string(dev.UserID))
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return httpapi.NotFound("Unknown room")
	} else if err != nil {
		return err
	}
	if ev != nil {
		switch roomserver.MembershipOf(ev) {
		case "join", "invite", "knock":
			return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Leave the room before forgetting it")
		}
	}
	if err := a.db.WithTx(ctx, func(tx *storage.Tx) error { return a.store.Forget(ctx, tx, string(dev.UserID), string(roomID)) }); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}
