package syncapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/userapi"
)

// maxRecursionDepth is how far /relations follows relations of relations with recurse=true;
// the spec asks servers to go at least 3 deep.
const maxRecursionDepth = 3

// aggregations returns the m.relations unsigned entry of e, "" if it has none (client-server
// API, "Aggregations of child events"): the m.thread summary and the latest m.replace.
func (a *API) aggregations(ctx context.Context, e *syncstore.Event, v *viewer) (string, error) {
	if e.RedactedBecause != nil {
		return "", nil
	}
	rels, err := a.store.RelationsOf(ctx, a.db, []string{e.EventID})
	if err != nil {
		return "", err
	}
	return aggregate(e, rels, v), nil
}

// aggregate builds the m.relations entry of e from the events relating to it, oldest first.
func aggregate(e *syncstore.Event, rels []*syncstore.Event, v *viewer) string {
	var latestThread, latestEdit *syncstore.Event
	count, participated := 0, e.Sender == v.user
	for _, r := range rels {
		if r.RelTarget != e.EventID || r.RedactedBecause != nil || !v.canSee(r) {
			continue
		}
		switch r.RelType {
		case "m.thread":
			count++
			latestThread = r
			participated = participated || r.Sender == v.user
		case "m.replace":
			// Valid replacements come from the original sender with the original type, for
			// neither a state event nor an edit (client-server API, "Validity of replacement
			// events"); the most recent by origin_server_ts, then event ID, wins.
			if r.Sender == e.Sender && r.Type == e.Type && e.StateKey == nil && r.StateKey == nil && e.RelType != "m.replace" &&
				hasNewContent(r) && (latestEdit == nil || r.OriginServerTS > latestEdit.OriginServerTS ||
				(r.OriginServerTS == latestEdit.OriginServerTS && r.EventID > latestEdit.EventID)) {
				latestEdit = r
			}
		}
	}
	var parts []string
	if latestThread != nil {
		latest := render(latestThread, v.user, "", time.Now().UnixMilli(), "")
		parts = append(parts, `"m.thread":{"latest_event":`+string(latest)+`,"count":`+strconv.Itoa(count)+
			`,"current_user_participated":`+strconv.FormatBool(participated)+`}`)
	}
	if latestEdit != nil {
		// The whole replacement event, formatted as normal (changed in v1.7).
		parts = append(parts, `"m.replace":`+string(render(latestEdit, v.user, "", time.Now().UnixMilli(), "")))
	}
	if len(parts) == 0 {
		return ""
	}
	return `"m.relations":{` + strings.Join(parts, ",") + `}`
}

// relations answers GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (a *API) relations(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	vars, q := httpapi.Vars(r), r.URL.Query()
	relType, evType := vars["relType"], vars["eventType"]
	dir := q.Get("dir")
	if dir == "" {
		dir = "b"
	}
	if dir != "b" && dir != "f" {
		return httpapi.InvalidParam("dir must be b or f")
	}
	limit, err := limitParam(q.Get("limit"), 50)
	if err != nil {
		return err
	}
	recurse := q.Get("recurse") == "true"
	ctx := r.Context()
	v, err := a.access(ctx, roomID, dev.UserID)
	if err != nil {
		return err
	}
	parent, err := a.visibleEvent(ctx, roomID, vars["eventId"], v)
	if err != nil {
		return err
	}
	// Collect the children (and with recurse their children) in the room.
	targets, depth := []string{parent.EventID}, 0
	var all []*syncstore.Event
	seen := map[string]bool{parent.EventID: true}
	for len(targets) > 0 && depth < maxRecursionDepth && (depth == 0 || recurse) {
		rels, err := a.store.RelationsOf(ctx, a.db, targets)
		if err != nil {
			return err
		}
		targets = targets[:0]
		for _, e := range rels {
			if seen[e.EventID] || e.RoomID != string(roomID) {
				continue
			}
			seen[e.EventID] = true
			all = append(all, e)
			targets = append(targets, e.EventID)
		}
		depth++
	}
	var chunk []*syncstore.Event
	for _, e := range all {
		if (relType == "" || e.RelType == relType) && (evType == "" || e.Type == evType) && v.canSee(e) {
			chunk = append(chunk, e)
		}
	}
	slices.SortFunc(chunk, func(x, y *syncstore.Event) int {
		if x.Depth != y.Depth {
			return cmpInt(x.Depth, y.Depth)
		}
		return cmpInt(x.Pos, y.Pos)
	})
	if dir == "b" {
		slices.Reverse(chunk)
	}
	if from := q.Get("from"); from != "" {
		p, err := parseRelToken(from)
		if err != nil {
			return err
		}
		i := 0
		for i < len(chunk) && !beyond(chunk[i], p, dir == "b") {
			i++
		}
		chunk = chunk[i:]
	}
	if to := q.Get("to"); to != "" {
		p, err := parseRelToken(to)
		if err != nil {
			return err
		}
		for i, e := range chunk {
			if beyond(e, p, dir == "b") {
				chunk = chunk[:i]
				break
			}
		}
	}
	resp := map[string]any{}
	if len(chunk) > limit {
		chunk = chunk[:limit]
		last := chunk[len(chunk)-1]
		resp["next_batch"] = pointToken(syncstore.Point{Depth: last.Depth, Pos: last.Pos})
	}
	resp["chunk"] = renderAll(chunk, dev)
	if recurse {
		resp["recursion_depth"] = depth
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseRelToken reads a /relations pagination token: the point of the last event served.
func parseRelToken(s string) (syncstore.Point, error) {
	t, err := synctokenTopo(s)
	if err != nil {
		return syncstore.Point{}, httpapi.InvalidParam("Invalid pagination token")
	}
	return t, nil
}

// beyond reports whether e comes after point p in the direction of paging.
func beyond(e *syncstore.Event, p syncstore.Point, backwards bool) bool {
	if backwards {
		return e.Depth < p.Depth || (e.Depth == p.Depth && e.Pos < p.Pos)
	}
	return e.Depth > p.Depth || (e.Depth == p.Depth && e.Pos > p.Pos)
}

// limitParam reads a limit query parameter.
func limitParam(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, httpapi.InvalidParam("limit must be a non-negative integer")
	}
	return min(n, maxMessagesLimit), nil
}

// threads answers GET /_matrix/client/v1/rooms/{roomId}/threads (client-server API,
// "Threads"): the room's thread roots, most recently active first.
func (a *API) threads(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	include := q.Get("include")
	if include != "" && include != "all" && include != "participated" {
		return httpapi.InvalidParam("include must be all or participated")
	}
	limit, err := limitParam(q.Get("limit"), 50)
	if err != nil {
		return err
	}
	before := int64(math.MaxInt64)
	if from := q.Get("from"); from != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(from, "p"), 10, 64)
		if err != nil || !strings.HasPrefix(from, "p") || n < 0 {
			return httpapi.InvalidParam("Invalid pagination token")
		}
		before = n
	}
	ctx := r.Context()
	v, err := a.access(ctx, roomID, dev.UserID)
	if err != nil {
		return err
	}
	var chunk []json.RawMessage
	next := ""
	now := time.Now().UnixMilli()
	for len(chunk) < limit {
		roots, err := a.store.ThreadRoots(ctx, a.db, string(roomID), before, limit)
		if err != nil {
			return err
		}
		for _, t := range roots {
			before = t.Latest
			root, err := a.store.EventByID(ctx, a.db, t.EventID)
			if err != nil {
				return err
			}
			if root == nil || root.RoomID != string(roomID) || !v.canSee(root) {
				continue
			}
			rels, err := a.store.RelationsOf(ctx, a.db, []string{root.EventID})
			if err != nil {
				return err
			}
			extra := aggregate(root, rels, v)
			if include == "participated" && !strings.Contains(extra, `"current_user_participated":true`) {
				continue
			}
			chunk = append(chunk, render(root, string(dev.UserID), string(dev.DeviceID), now, extra))
			if len(chunk) == limit {
				next = "p" + strconv.FormatInt(t.Latest, 10)
				break
			}
		}
		if len(roots) < limit {
			break
		}
	}
	resp := map[string]any{"chunk": chunk}
	if chunk == nil {
		resp["chunk"] = []any{}
	}
	if next != "" {
		resp["next_batch"] = next
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// timestampToEvent answers GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event: the visible
// event closest to ts in direction dir.
func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		return httpapi.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		return httpapi.InvalidParam("dir must be f or b")
	}
	ctx := r.Context()
	v, err := a.access(ctx, roomID, dev.UserID)
	if err != nil {
		return err
	}
	for skip := 0; skip < 100; skip++ {
		e, err := a.store.ClosestByTS(ctx, a.db, string(roomID), ts, dir == "f", skip)
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		if v.canSee(e) {
			httpapi.WriteJSON(w, http.StatusOK, map[string]any{"event_id": id.EventID(e.EventID), "origin_server_ts": e.OriginServerTS})
			return nil
		}
	}
	return httpapi.NotFound("No event found")
}

func synctokenTopo(s string) (syncstore.Point, error) {
	t, err := synctoken.ParseTopo(s)
	return syncstore.Point{Depth: t.Depth, Pos: t.Stream}, err
}

// renderAggregated renders events for a device with their m.relations aggregations, reading
// the relations of the whole page in one query.
func (a *API) renderAggregated(ctx context.Context, evs []*syncstore.Event, dev *userapi.Device, v *viewer) ([]json.RawMessage, error) {
	ids := make([]string, 0, len(evs))
	for _, e := range evs {
		if e.RedactedBecause == nil {
			ids = append(ids, e.EventID)
		}
	}
	rels, err := a.store.RelationsOf(ctx, a.db, ids)
	if err != nil {
		return nil, err
	}
	byTarget := map[string][]*syncstore.Event{}
	for _, r := range rels {
		byTarget[r.RelTarget] = append(byTarget[r.RelTarget], r)
	}
	now := time.Now().UnixMilli()
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		extra := ""
		if rs := byTarget[e.EventID]; len(rs) > 0 && e.RedactedBecause == nil {
			extra = aggregate(e, rs, v)
		}
		out[i] = render(e, string(dev.UserID), string(dev.DeviceID), now, extra)
	}
	return out, nil
}

// hasNewContent reports whether a replacement carries m.new_content; encrypted replacements
// carry it inside their ciphertext, so they count.
func hasNewContent(r *syncstore.Event) bool {
	if r.Type == "m.room.encrypted" {
		return true
	}
	var ev struct {
		Content struct {
			NewContent json.RawMessage `json:"m.new_content"`
		} `json:"content"`
	}
	return json.Unmarshal(r.JSON, &ev) == nil && len(ev.Content.NewContent) > 0 && ev.Content.NewContent[0] == '{'
}
