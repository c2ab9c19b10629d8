package syncapi

import (
	"encoding/json"
	"strings"

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

// matchType reports whether typ matches one of the patterns, where * matches any characters
// and nothing else is special (client-server API, "Filtering": types).
func matchType(patterns []string, typ string) bool {
	for _, p := range patterns {
		if glob(p, typ) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern whose only wildcard is *.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
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
	if f.Types != nil && !matchType(f.Types, e.Type) {
		return false
	}
	if matchType(f.NotTypes, e.Type) {
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
