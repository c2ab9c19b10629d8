package search

import (
	"net/http"
	"slices"

	"github.com/latticehq/lattice/internal/eventfilter"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/searchstore"
)

// Limits of one search request. Results and context are capped silently, as the spec lets
// servers impose maxima; ranked results come from the newest maxRanked matches.
const (
	defaultLimit     = 10
	maxLimit         = 50
	defaultContext   = 5
	maxContext       = 20
	maxRanked        = 5000
	maxFilterEntries = 1000
	maxTermBytes     = 1000
)

// keyTypes maps the keys a search may cover to the event type each belongs to
// (client-server API, "Server Side Search", room_events).
var keyTypes = map[string]string{
	"content.body":  "m.room.message",
	"content.name":  "m.room.name",
	"content.topic": "m.room.topic",
}

// searchRequest is the body of POST /search.
type searchRequest struct {
	SearchCategories *struct {
		RoomEvents *roomEventsCriteria `json:"room_events"`
	} `json:"search_categories"`
}

type roomEventsCriteria struct {
	SearchTerm   *string          `json:"search_term"`
	Keys         []string         `json:"keys"`
	Filter       *roomEventFilter `json:"filter"`
	OrderBy      string           `json:"order_by"`
	EventContext *struct {
		BeforeLimit    *int `json:"before_limit"`
		AfterLimit     *int `json:"after_limit"`
		IncludeProfile bool `json:"include_profile"`
	} `json:"event_context"`
	IncludeState bool `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

// roomEventFilter is the part of a RoomEventFilter (client-server API, "Filtering") a search
// applies. Pointers tell an absent list (no restriction) from an empty one (matches nothing).
type roomEventFilter struct {
	Limit      *int      `json:"limit"`
	Rooms      *[]string `json:"rooms"`
	NotRooms   []string  `json:"not_rooms"`
	Senders    *[]string `json:"senders"`
	NotSenders []string  `json:"not_senders"`
	Types      *[]string `json:"types"`
	NotTypes   []string  `json:"not_types"`
}

// plan is a validated room_events search.
type plan struct {
	q       searchstore.Query
	order   string
	limit   int
	page    batchToken // where this page starts, and the group it stays in
	groupBy []string
	// context: nil when not requested.
	context *contextOpts
	state   bool
}

type contextOpts struct {
	before, after int
	profile       bool
}

// parseCriteria validates room_events criteria, with the next_batch token if one came.
func parseCriteria(c *roomEventsCriteria, tok *batchToken) (*plan, error) {
	if c.SearchTerm == nil {
		return nil, httpapi.BadJSON("search_categories.room_events.search_term is required")
	}
	if len(*c.SearchTerm) > maxTermBytes {
		return nil, httpapi.InvalidParam("search_term is longer than %d bytes", maxTermBytes)
	}
	p := &plan{order: c.OrderBy, limit: defaultLimit}
	p.q.Words = searchstore.Words(*c.SearchTerm)
	p.q.Words = p.q.Words[:min(len(p.q.Words), searchstore.MaxWords)]
	switch p.order {
	case "":
		p.order = orderRank
	case orderRank, orderRecent:
	default:
		return nil, httpapi.InvalidParam("order_by must be rank or recent")
	}

	keys := c.Keys
	if len(keys) == 0 {
		keys = []string{"content.body", "content.name", "content.topic"}
	}
	var types []string
	for _, k := range keys {
		t, ok := keyTypes[k]
		if !ok {
			return nil, httpapi.InvalidParam("Unknown search key %q", k)
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if f := c.Filter; f != nil {
		if err := applyFilter(p, f, &types); err != nil {
			return nil, err
		}
	}
	p.q.Types = types

	if c.EventContext != nil {
		p.context = &contextOpts{before: defaultContext, after: defaultContext, profile: c.EventContext.IncludeProfile}
		for _, l := range []struct {
			v   *int
			dst *int
		}{{c.EventContext.BeforeLimit, &p.context.before}, {c.EventContext.AfterLimit, &p.context.after}} {
			if l.v == nil {
				continue
			}
			if *l.v < 0 {
				return nil, httpapi.InvalidParam("event_context limits must not be negative")
			}
			*l.dst = min(*l.v, maxContext)
		}
	}
	p.state = c.IncludeState
	if c.Groupings != nil {
		for _, g := range c.Groupings.GroupBy {
			if g.Key != groupRoom && g.Key != groupSender {
				return nil, httpapi.InvalidParam("Unknown group key %q (want room_id or sender)", g.Key)
			}
			if !slices.Contains(p.groupBy, g.Key) {
				p.groupBy = append(p.groupBy, g.Key)
			}
		}
	}

	p.page = batchToken{Order: p.order}
	if tok != nil {
		if tok.Order != p.order {
			return nil, badBatch()
		}
		p.page = *tok
		// A group's token keeps the search inside that group ("Pagination").
		switch tok.Key {
		case groupRoom:
			p.q.Rooms = only(p.q.Rooms, tok.Value)
		case groupSender:
			p.q.Senders = only(p.q.Senders, tok.Value)
		}
		p.q.Before = tok.Before
	}
	return p, nil
}

// badBatch answers a next_batch that Lattice did not hand out for this search.
func badBatch() error {
	return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Unknown next_batch token")
}

// only narrows an include list (nil: everything) to one value.
func only(list []string, v string) []string {
	if list == nil || slices.Contains(list, v) {
		return []string{v}
	}
	return []string{}
}

func applyFilter(p *plan, f *roomEventFilter, types *[]string) error {
	if f.Limit != nil {
		if *f.Limit <= 0 {
			return httpapi.InvalidParam("filter.limit must be greater than 0")
		}
		p.limit = min(*f.Limit, maxLimit)
	}
	for _, l := range [][]string{deref(f.Rooms), f.NotRooms, deref(f.Senders), f.NotSenders, deref(f.Types), f.NotTypes} {
		if len(l) > maxFilterEntries {
			return httpapi.InvalidParam("A filter list has more than %d entries", maxFilterEntries)
		}
	}
	if f.Rooms != nil {
		p.q.Rooms = append([]string{}, *f.Rooms...)
	}
	p.q.NotRooms = f.NotRooms
	if f.Senders != nil {
		p.q.Senders = append([]string{}, *f.Senders...)
	}
	p.q.NotSenders = f.NotSenders
	// Only three types are ever searched, so types and not_types narrow that set here.
	*types = slices.DeleteFunc(*types, func(t string) bool {
		return (f.Types != nil && !eventfilter.AnyTypeMatches(*f.Types, t)) || eventfilter.AnyTypeMatches(f.NotTypes, t)
	})
	return nil
}

func deref(l *[]string) []string {
	if l == nil {
		return nil
	}
	return *l
}
