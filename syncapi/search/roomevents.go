package search

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage/searchstore"
	"github.com/latticehq/lattice/userapi"
)

// roomEventsResult is search_categories.room_events of the answer.
type roomEventsResult struct {
	Count      int                                `json:"count"`
	Highlights []string                           `json:"highlights"`
	Results    []result                           `json:"results"`
	State      map[id.RoomID][]*pdu.ClientEvent   `json:"state,omitempty"`
	Groups     map[string]map[string]*resultGroup `json:"groups,omitempty"`
	NextBatch  string                             `json:"next_batch,omitempty"`
}

type result struct {
	Rank    float64          `json:"rank"`
	Result  *pdu.ClientEvent `json:"result"`
	Context *resultContext   `json:"context,omitempty"`
}

type resultContext struct {
	Start        string                `json:"start,omitempty"`
	End          string                `json:"end,omitempty"`
	ProfileInfo  map[id.UserID]profile `json:"profile_info,omitempty"`
	EventsBefore []*pdu.ClientEvent    `json:"events_before"`
	EventsAfter  []*pdu.ClientEvent    `json:"events_after"`
}

type profile struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

type resultGroup struct {
	NextBatch string       `json:"next_batch,omitempty"`
	Order     int          `json:"order"`
	Results   []id.EventID `json:"results"`
}

// search answers POST /search (client-server API, "Server Side Search").
func (s *Search) search(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req searchRequest
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.SearchCategories == nil {
		return httpapi.BadJSON("search_categories is required")
	}
	var tok *batchToken
	if qv := r.URL.Query(); qv.Has("next_batch") {
		t, err := parseBatch(qv.Get("next_batch"))
		if err != nil {
			return badBatch()
		}
		tok = &t
	}
	out := map[string]any{}
	if c := req.SearchCategories.RoomEvents; c != nil {
		p, err := parseCriteria(c, tok)
		if err != nil {
			return err
		}
		p.q.User = string(dev.UserID)
		if err := s.catchUp(r.Context()); err != nil {
			return err
		}
		res, err := s.roomEvents(r.Context(), p)
		if err != nil {
			return err
		}
		out["room_events"] = res
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"search_categories": out})
	return nil
}

// roomEvents runs a room_events search and renders the answer.
func (s *Search) roomEvents(ctx context.Context, p *plan) (*roomEventsResult, error) {
	res := &roomEventsResult{Highlights: []string{}, Results: []result{}}
	var page []searchstore.Match
	// groupNext builds the token of a group that has more results, nil if it has none.
	var groupNext func(key, value string) (*batchToken, error)
	switch p.order {
	case orderRecent:
		ms, err := s.store.Matches(ctx, p.q, p.limit+1)
		if err != nil {
			return nil, err
		}
		page = ms[:min(len(ms), p.limit)]
		all := p.q
		all.Before = 0
		if res.Count, err = s.store.Count(ctx, all); err != nil {
			return nil, err
		}
		if len(ms) > p.limit {
			next := p.page
			next.Before = page[len(page)-1].Pos
			res.NextBatch = next.String()
			// Every result of a group after the page's end is older than the page's last.
			more := map[string]map[string]bool{}
			rest := p.q
			rest.Before = next.Before
			for _, key := range p.groupBy {
				if more[key], err = s.store.GroupsMatching(ctx, rest, key, groupValues(page, key)); err != nil {
					return nil, err
				}
			}
			groupNext = func(key, value string) (*batchToken, error) {
				if !more[key][value] {
					return nil, nil
				}
				return &batchToken{Order: orderRecent, Before: next.Before, Key: key, Value: value}, nil
			}
		}
	case orderRank:
		cands, err := s.store.Matches(ctx, p.q, maxRanked)
		if err != nil {
			return nil, err
		}
		// Newest first already, so a stable sort breaks rank ties by recency.
		slices.SortStableFunc(cands, func(a, b searchstore.Match) int { return cmp.Compare(b.Rank, a.Rank) })
		res.Count = len(cands)
		if len(cands) == maxRanked {
			if res.Count, err = s.store.Count(ctx, p.q); err != nil {
				return nil, err
			}
		}
		start := min(p.page.Offset, len(cands))
		end := min(start+p.limit, len(cands))
		page = cands[start:end]
		if end < len(cands) {
			next := p.page
			next.Offset = end
			res.NextBatch = next.String()
		}
		groupNext = func(key, value string) (*batchToken, error) {
			if !slices.ContainsFunc(cands[end:], func(m searchstore.Match) bool { return groupValue(m, key) == value }) {
				return nil, nil
			}
			// The group's own ranking is the same order restricted to it.
			seen := 0
			for _, m := range cands[:end] {
				if groupValue(m, key) == value {
					seen++
				}
			}
			return &batchToken{Order: orderRank, Offset: seen, Key: key, Value: value}, nil
		}
	}
	if err := s.render(ctx, p, page, res); err != nil {
		return nil, err
	}
	if len(p.groupBy) > 0 {
		res.Groups = map[string]map[string]*resultGroup{}
		for _, key := range p.groupBy {
			groups := map[string]*resultGroup{}
			for _, r := range res.Results {
				v := string(r.Result.RoomID)
				if key == groupSender {
					v = string(r.Result.Sender)
				}
				g := groups[v]
				if g == nil {
					g = &resultGroup{Order: len(groups) + 1, Results: []id.EventID{}}
					groups[v] = g
					if groupNext != nil {
						t, err := groupNext(key, v)
						if err != nil {
							return nil, err
						}
						if t != nil {
							g.NextBatch = t.String()
						}
					}
				}
				g.Results = append(g.Results, r.Result.EventID)
			}
			res.Groups[key] = groups
		}
	}
	return res, nil
}

func groupValue(m searchstore.Match, key string) string {
	if key == groupSender {
		return m.Sender
	}
	return m.RoomID
}

// groupValues returns the distinct values of a group key in a page.
func groupValues(page []searchstore.Match, key string) []string {
	var out []string
	for _, m := range page {
		if v := groupValue(m, key); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// render fills in the results of a page with their context, the highlights and the state.
func (s *Search) render(ctx context.Context, p *plan, page []searchstore.Match, res *roomEventsResult) error {
	highlights := append([]string{}, p.q.Words...)
	var rooms []id.RoomID
	for _, m := range page {
		ev, err := s.opts.Rooms.Event(ctx, id.EventID(m.EventID))
		if err != nil {
			return err
		}
		if ev == nil {
			continue // the index never holds events the roomserver lacks; skip rather than fail
		}
		r := result{Rank: m.Rank, Result: ev.Client(nil)}
		if p.context != nil {
			if r.Context, err = s.context(ctx, p, m, ev); err != nil {
				return err
			}
		}
		res.Results = append(res.Results, r)
		var c content
		_ = json.Unmarshal(ev.Content(), &c)
		for _, w := range searchstore.Words(searchText(ev, &c)) {
			if !slices.Contains(highlights, w) && slices.ContainsFunc(p.q.Words, func(q string) bool { return strings.HasPrefix(w, q) }) {
				highlights = append(highlights, w)
			}
		}
		if !slices.Contains(rooms, ev.RoomID()) {
			rooms = append(rooms, ev.RoomID())
		}
	}
	res.Highlights = highlights
	if p.state {
		res.State = map[id.RoomID][]*pdu.ClientEvent{}
		for _, roomID := range rooms {
			st, err := s.visibleState(ctx, p.q.User, roomID)
			if err != nil {
				return err
			}
			res.State[roomID] = st
		}
	}
	return nil
}

// context returns the events around a result that the user may see, and the profiles their
// senders had at the result (event_context).
func (s *Search) context(ctx context.Context, p *plan, m searchstore.Match, ev *pdu.Event) (*resultContext, error) {
	prevH, nextH, err := s.store.Context(ctx, p.q.User, m.RoomID, m.Pos, p.context.before, p.context.after)
	if err != nil {
		return nil, err
	}
	c := &resultContext{EventsBefore: []*pdu.ClientEvent{}, EventsAfter: []*pdu.ClientEvent{}}
	first, last := synctoken.Topo{Depth: max(ev.Depth(), 0), Stream: m.Pos}, synctoken.Topo{Depth: max(ev.Depth(), 0), Stream: m.Pos}
	senders := []id.UserID{ev.Sender()}
	load := func(hs []searchstore.Event, dst *[]*pdu.ClientEvent, edge *synctoken.Topo) error {
		for _, h := range hs {
			e, err := s.opts.Rooms.Event(ctx, id.EventID(h.EventID))
			if err != nil {
				return err
			}
			if e == nil {
				continue
			}
			if h.Redacted {
				e = e.Redacted()
			}
			*dst = append(*dst, e.Client(nil))
			*edge = synctoken.Topo{Depth: max(e.Depth(), 0), Stream: h.Pos}
			if !slices.Contains(senders, e.Sender()) {
				senders = append(senders, e.Sender())
			}
		}
		return nil
	}
	// Before: newest first, as /context gives them; after: oldest first.
	if err := load(prevH, &c.EventsBefore, &first); err != nil {
		return nil, err
	}
	if err := load(nextH, &c.EventsAfter, &last); err != nil {
		return nil, err
	}
	// A token is the point just after its event (synctoken.Topo): start sits before the
	// earliest event, so paging back from it does not repeat that event.
	c.Start, c.End = synctoken.Topo{Depth: first.Depth, Stream: first.Stream - 1}.String(), last.String()
	if p.context.profile {
		c.ProfileInfo = map[id.UserID]profile{}
		for _, u := range senders {
			pr, ok, err := s.profileAt(ctx, m.RoomID, u, m.Pos)
			if err != nil {
				return nil, err
			}
			if ok {
				c.ProfileInfo[u] = pr
			}
		}
	}
	return c, nil
}

// profileAt is the profile a user's member event in the room gave them just before pos.
func (s *Search) profileAt(ctx context.Context, roomID string, user id.UserID, pos int64) (profile, bool, error) {
	h, err := s.store.MemberBefore(ctx, roomID, string(user), pos)
	if err != nil || h == nil {
		return profile{}, false, err
	}
	ev, err := s.opts.Rooms.Event(ctx, id.EventID(h.EventID))
	if err != nil || ev == nil {
		return profile{}, false, err
	}
	if h.Redacted {
		ev = ev.Redacted()
	}
	var c content
	_ = json.Unmarshal(ev.Content(), &c)
	return profile{DisplayName: str(c.Display), AvatarURL: str(c.Avatar)}, true, nil
}

// visibleState is the state of a room as the user may see it: the current state while they
// are joined, else the state when they last left (include_state). A room they were only ever
// invited to shows none, as invitees see only the invite's stripped state.
func (s *Search) visibleState(ctx context.Context, user string, roomID id.RoomID) ([]*pdu.ClientEvent, error) {
	spans, err := s.store.Spans(ctx, s.store.DB(), user, string(roomID))
	if err != nil {
		return nil, err
	}
	i := len(spans) - 1
	for i >= 0 && spans[i].Membership != "join" {
		i--
	}
	var st map[auth.StateKey]*pdu.Event
	switch {
	case i < 0:
		return []*pdu.ClientEvent{}, nil
	case spans[i].Open():
		st, err = s.opts.Rooms.CurrentState(ctx, roomID)
	default:
		st, err = s.opts.Rooms.StateAtPosition(ctx, roomID, spans[i].End)
	}
	if err != nil {
		return nil, err
	}
	keys := make([]auth.StateKey, 0, len(st))
	ids := make([]string, 0, len(st))
	for k, ev := range st {
		keys = append(keys, k)
		ids = append(ids, string(ev.EventID()))
	}
	slices.SortFunc(keys, func(a, b auth.StateKey) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.StateKey, b.StateKey))
	})
	redacted, err := s.store.Redacted(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*pdu.ClientEvent, 0, len(keys))
	for _, k := range keys {
		ev := st[k]
		if redacted[string(ev.EventID())] {
			ev = ev.Redacted()
		}
		out = append(out, ev.Client(nil))
	}
	return out, nil
}
