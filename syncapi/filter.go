package syncapi

import (
	"encoding/json"

	"github.com/latticehq/lattice/internal/eventfilter"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/syncstore"
)

// roomEventFilter is a RoomEventFilter (client-server API, "Filtering").
type roomEventFilter struct {
	Limit                   *int     `json:"limit"`
	Types                   []string `json:"types"`
	NotTypes                []string `json:"not_types"`
	Senders                 []string `json:"senders"`
	NotSenders              []string `json:"not_senders"`
	Rooms                   []string `json:"rooms"`
	NotRooms                []string `json:"not_rooms"`
	ContainsURL             *bool    `json:"contains_url"`
	LazyLoadMembers         bool     `json:"lazy_load_members"`
	IncludeRedundantMembers bool     `json:"include_redundant_members"`
}

// parseFilter reads the filter query parameter: a JSON-encoded RoomEventFilter.
func parseFilter(s string) (*roomEventFilter, error) {
	f := &roomEventFilter{}
	if s == "" {
		return f, nil
	}
	if err := json.Unmarshal([]byte(s), f); err != nil {
		return nil, httpapi.InvalidParam("filter is not a RoomEventFilter: %v", err)
	}
	if f.Limit != nil && *f.Limit < 0 {
		return nil, httpapi.InvalidParam("filter.limit must not be negative")
	}
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// matches reports whether an event passes the filter.
func (f *roomEventFilter) matches(e *syncstore.Event) bool {
	if f.Types != nil && !eventfilter.AnyTypeMatches(f.Types, e.Type) {
		return false
	}
	if eventfilter.AnyTypeMatches(f.NotTypes, e.Type) {
		return false
	}
	if f.Senders != nil && !contains(f.Senders, e.Sender) {
		return false
	}
	if contains(f.NotSenders, e.Sender) {
		return false
	}
	if f.Rooms != nil && !contains(f.Rooms, e.RoomID) {
		return false
	}
	if contains(f.NotRooms, e.RoomID) {
		return false
	}
	if f.ContainsURL != nil && *f.ContainsURL != e.ContainsURL {
		return false
	}
	return true
}
