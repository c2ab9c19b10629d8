package presence

import (
	"cmp"
	"context"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/eventfilter"
	"github.com/latticehq/lattice/storage/presencestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

// maxScan bounds the changes an incremental sync reads from the whole stream and filters by
// shared rooms (a map lookup per room of the changed user, their rooms cached). A longer gap,
// such as a client back after days, reads only the changes of the user's co-members instead.
const maxScan = 1000

// content is an m.presence event's content and the answer of GET /presence/{userId}/status.
type content struct {
	Presence        string  `json:"presence"`
	LastActiveAgo   *int64  `json:"last_active_ago,omitempty"`
	CurrentlyActive bool    `json:"currently_active"`
	StatusMsg       *string `json:"status_msg,omitempty"`
}

// event is an m.presence event (client-server API, "Presence", m.presence).
type event struct {
	Type    string    `json:"type"`
	Sender  id.UserID `json:"sender"`
	Content content   `json:"content"`
	pos     int64
}

// content returns what clients see of r at now (ms). last_active_ago is computed at delivery,
// as "Last active ago" asks.
func (r *record) content(now int64) content {
	c := content{Presence: r.state, CurrentlyActive: r.state == Online, StatusMsg: r.status}
	if r.active > 0 {
		ago := max(now-r.active, 0)
		c.LastActiveAgo = &ago
	}
	return c
}

// Stream is the presence stream's name in the sync token and the notifier.
func (t *Tracker) Stream() string { return synctypes.StreamPresence }

// Position is the latest committed position of the presence stream (0 when disabled).
func (t *Tracker) Position(context.Context) (int64, error) {
	if !t.opts.Enabled {
		return 0, nil
	}
	return t.pos.Load(), nil
}

// Collect adds the m.presence events of the user and of those who share a room with them: the
// ones that changed in (from, to], or on an initial sync the current presence of everyone who
// is not offline. It applies the filter's presence EventFilter.
func (t *Tracker) Collect(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) error {
	if !t.opts.Enabled {
		return nil
	}
	var f *synctypes.EventFilter
	if req.Filter != nil {
		f = req.Filter.Presence
	}
	if f != nil && ((f.Types != nil && !eventfilter.AnyTypeMatches(f.Types, "m.presence")) || eventfilter.AnyTypeMatches(f.NotTypes, "m.presence")) {
		return nil
	}
	var evs []event
	var err error
	switch {
	case req.Initial || from <= 0: // from 0: a token from before presence was on
		evs, err = t.current(ctx, req)
	case from < to:
		evs, err = t.changes(ctx, req, from, to)
	}
	if err == nil && !req.Initial && from > 0 && len(req.NewlyJoined) > 0 {
		// The members of rooms joined since the token: their current presence, as an initial
		// sync would give it.
		var more []event
		if more, err = t.current(ctx, &synctypes.Request{User: req.User, Joined: req.NewlyJoined}); err == nil {
			seen := map[id.UserID]bool{}
			for _, e := range evs {
				seen[e.Sender] = true
			}
			for _, e := range more {
				if !seen[e.Sender] {
					evs = append(evs, e)
				}
			}
		}
	}
	if err != nil {
		return err
	}
	if f != nil {
		evs = slices.DeleteFunc(evs, func(e event) bool {
			return (f.Senders != nil && !slices.Contains(f.Senders, string(e.Sender))) || slices.Contains(f.NotSenders, string(e.Sender))
		})
		if f.Limit != nil && len(evs) > max(*f.Limit, 0) {
			evs = evs[len(evs)-max(*f.Limit, 0):] // the newest
		}
	}
	for _, e := range evs {
		resp.Presence.Add(e)
	}
	return nil
}

// coMembers returns the user and everyone joined to one of the rooms. Its cost is the sum of
// the rooms' member counts, from the roomserver's cached state.
func (t *Tracker) coMembers(ctx context.Context, req *synctypes.Request) (map[id.UserID]bool, error) {
	users := map[id.UserID]bool{req.User: true}
	for _, r := range req.Joined {
		ms, err := t.opts.Rooms.Members(ctx, r, "join")
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			users[m] = true
		}
	}
	return users, nil
}

// current returns the presence of the user and of their co-members who are not offline (all of
// whom are in memory), oldest change first. Offline ones are left out: clients take a user they
// were told nothing about as offline.
func (t *Tracker) current(ctx context.Context, req *synctypes.Request) ([]event, error) {
	users, err := t.coMembers(ctx, req)
	if err != nil {
		return nil, err
	}
	now := t.nowMS()
	var evs []event
	t.mu.Lock()
	for u := range users {
		if r := t.records[u]; r != nil && r.state != Offline && u != req.User {
			evs = append(evs, event{Type: "m.presence", Sender: u, Content: r.content(now), pos: r.pos})
		}
	}
	t.mu.Unlock()
	self, err := t.peek(ctx, req.User)
	if err != nil {
		return nil, err
	}
	if self.exists {
		evs = append(evs, event{Type: "m.presence", Sender: req.User, Content: self.content(now), pos: self.pos})
	}
	slices.SortFunc(evs, func(a, b event) int { return cmp.Compare(a.pos, b.pos) })
	return evs, nil
}

// changes returns the presence of the user and of their co-members whose last change is in
// (from, to], oldest first.
func (t *Tracker) changes(ctx context.Context, req *synctypes.Request, from, to int64) ([]event, error) {
	rows, err := t.store.Changed(ctx, from, to, maxScan+1)
	if err != nil {
		return nil, err
	}
	if len(rows) > maxScan {
		users, err := t.coMembers(ctx, req)
		if err != nil {
			return nil, err
		}
		list := make([]string, 0, len(users))
		for u := range users {
			if t.isLocal(u) { // presence is known of local users only
				list = append(list, string(u))
			}
		}
		if rows, err = t.store.ChangedOf(ctx, list, from, to); err != nil {
			return nil, err
		}
	} else {
		joined := make(map[id.RoomID]struct{}, len(req.Joined))
		for _, r := range req.Joined {
			joined[r] = struct{}{}
		}
		kept := rows[:0]
		for _, p := range rows {
			ok, err := t.visible(ctx, req.User, joined, id.UserID(p.UserID))
			if err != nil {
				return nil, err
			}
			if ok {
				kept = append(kept, p)
			}
		}
		rows = kept
	}
	now := t.nowMS()
	evs := make([]event, 0, len(rows))
	for i := range rows {
		r := t.withMemory(&rows[i])
		evs = append(evs, event{Type: "m.presence", Sender: id.UserID(rows[i].UserID), Content: r.content(now), pos: r.pos})
	}
	return evs, nil
}

// visible reports whether viewer, joined to the rooms of joined, sees user's presence.
func (t *Tracker) visible(ctx context.Context, viewer id.UserID, joined map[id.RoomID]struct{}, user id.UserID) (bool, error) {
	if user == viewer {
		return true, nil
	}
	rooms, err := t.rooms.joined(ctx, user)
	if err != nil {
		return false, err
	}
	if len(joined) < len(rooms) {
		joined, rooms = rooms, joined
	}
	for r := range rooms {
		if _, ok := joined[r]; ok {
			return true, nil
		}
	}
	return false, nil
}

// withMemory returns a row as a record, with the last activity that memory may know newer.
func (t *Tracker) withMemory(p *presencestore.Presence) *record {
	r := fromRow(p)
	t.mu.Lock()
	if m := t.records[id.UserID(p.UserID)]; m != nil {
		r.active = max(r.active, m.active)
	}
	t.mu.Unlock()
	return r
}
