package search

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/searchstore"
	"github.com/latticehq/lattice/userapi"
)

// Limits of a user directory search.
const (
	defaultUserLimit = 10
	maxUserLimit     = 50
	maxUserTermBytes = 256
	// maxAccountScan bounds the accounts looked at for local users outside the directory.
	maxAccountScan = 100
)

type userSearchRequest struct {
	SearchTerm *string `json:"search_term"`
	Limit      *int    `json:"limit"`
}

type userResult struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// searchUsers answers POST /user_directory/search (client-server API, "User Directory"): the
// users who share a room with the searcher and the members of public rooms (join rule public,
// history world_readable, or listed in the room directory), and with
// user_directory.search_all_users every local user. Each word of the term must be the prefix of
// a word of the user's localpart or display name, in any letter case.
func (s *Search) searchUsers(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req userSearchRequest
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.SearchTerm == nil {
		return httpapi.BadJSON("search_term is required")
	}
	if len(*req.SearchTerm) > maxUserTermBytes {
		return httpapi.InvalidParam("search_term is longer than %d bytes", maxUserTermBytes)
	}
	limit := defaultUserLimit
	if req.Limit != nil {
		switch {
		case *req.Limit < 0:
			return httpapi.InvalidParam("limit must not be negative")
		case *req.Limit > 0: // 0, as some clients send for "unset", takes the default
			limit = min(*req.Limit, maxUserLimit)
		}
	}
	// A whole user ID searches by its localpart: server names are not indexed words.
	term := strings.ToLower(strings.TrimSpace(*req.SearchTerm))
	if strings.HasPrefix(term, "@") {
		term, _, _ = strings.Cut(term[1:], ":")
	}
	words := searchstore.Words(term)
	words = words[:min(len(words), searchstore.MaxWords)]
	if err := s.catchUp(r.Context()); err != nil {
		return err
	}
	published, err := s.opts.Rooms.PublishedRooms(r.Context())
	if err != nil {
		return err
	}
	q := searchstore.DirQuery{Searcher: string(dev.UserID), AllLocal: s.opts.SearchAllUsers, Words: words, Term: term, Limit: limit + 1}
	for _, p := range published {
		q.Published = append(q.Published, string(p))
	}
	users, err := s.store.SearchUsers(r.Context(), q)
	if err != nil {
		return err
	}
	if s.opts.SearchAllUsers && len(users) <= limit {
		if users, err = s.addLocalAccounts(r.Context(), users, words, limit+1); err != nil {
			return err
		}
	}
	results := make([]userResult, 0, min(len(users), limit))
	for _, u := range users[:min(len(users), limit)] {
		results = append(results, userResult{UserID: u.UserID, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL})
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"results": results, "limited": len(users) > limit})
	return nil
}

// addLocalAccounts adds, up to limit, local users who have never been in a room and so are not
// in the directory: found by their user ID containing the term's longest word, and matched
// against their profile.
func (s *Search) addLocalAccounts(ctx context.Context, users []searchstore.DirUser, words []string, limit int) ([]searchstore.DirUser, error) {
	if len(words) == 0 {
		return users, nil
	}
	longest := slices.MaxFunc(words, func(a, b string) int { return len(a) - len(b) })
	accs, _, err := s.opts.Users.Accounts(ctx, userapi.AccountFilter{Name: longest, Limit: maxAccountScan})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(accs))
	for i, a := range accs {
		ids[i] = string(a.UserID)
	}
	known, err := s.store.KnownUsers(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, a := range accs {
		if len(users) >= limit {
			break
		}
		if known[string(a.UserID)] || a.Deactivated || a.IsGuest {
			continue // the directory already judged users it knows
		}
		u := searchstore.DirUser{UserID: string(a.UserID)}
		fields, err := s.opts.Users.Profile(ctx, a.UserID)
		if err != nil && !errors.Is(err, userapi.ErrNotFound) {
			return nil, err
		}
		u.DisplayName, u.AvatarURL = str(fields["displayname"]), str(fields["avatar_url"])
		if matchesWords(words, localpartOf(a.UserID), u.DisplayName) {
			users = append(users, u)
		}
	}
	return users, nil
}

func localpartOf(u id.UserID) string {
	l, _, _ := strings.Cut(strings.TrimPrefix(string(u), "@"), ":")
	return l
}

// matchesWords reports whether each word is the prefix of a word of one of the texts.
func matchesWords(words []string, texts ...string) bool {
	var have []string
	for _, t := range texts {
		have = append(have, searchstore.Words(t)...)
	}
	for _, w := range words {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.HasPrefix(h, w) }) {
			return false
		}
	}
	return true
}
