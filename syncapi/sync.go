package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

const (
	// maxSyncTimeout caps a long-poll; clients ask for 30 s, and presence takes a user who starts
	// no sync for 3 min as gone.
	maxSyncTimeout = 2 * time.Minute
	// defaultTimelineLimit is the timeline length without a filter's limit.
	defaultTimelineLimit = 10
	// maxTimelineLimit bounds what a filter may ask for.
	maxTimelineLimit = 1000
	// maxDeltaEvents is the largest gap an incremental sync reads as one stream-ordered query;
	// beyond it each joined room is read on its own.
	maxDeltaEvents = 2000
	// maxCachedUsers bounds the users whose room lists the long-poll keeps in memory.
	maxCachedUsers = 50_000
)

// joinedCache keeps each user's current membership per room, for the keys a long-poll waits on
// and the rooms a sync reads. The consumer drops a user's entry when their membership changes.
type joinedCache struct {
	mu sync.Mutex
	m  map[id.UserID]map[id.RoomID]string
}

func (c *joinedCache) get(u id.UserID) (map[id.RoomID]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.m[u]
	return m, ok
}

func (c *joinedCache) put(u id.UserID, m map[id.RoomID]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedUsers {
		c.m = map[id.UserID]map[id.RoomID]string{}
	}
	c.m[u] = m
}

func (c *joinedCache) drop(u id.UserID) {
	c.mu.Lock()
	delete(c.m, u)
	c.mu.Unlock()
}

// memberships returns the user's current membership of every room they have one in.
func (a *API) memberships(ctx context.Context, user id.UserID) (map[id.RoomID]string, error) {
	if m, ok := a.joined.get(user); ok {
		return m, nil
	}
	hist, err := a.store.UserMemberships(ctx, a.db, string(user))
	if err != nil {
		return nil, err
	}
	m := make(map[id.RoomID]string, len(hist))
	for room, h := range hist {
		m[id.RoomID(room)] = h[len(h)-1].Membership
	}
	a.joined.put(user, m)
	return m, nil
}

// syncParams is a parsed GET /sync request.
type syncParams struct {
	since     *synctoken.Stream
	timeout   time.Duration
	fullState bool
	filter    *synctypes.Filter
	// skip names streams this request neither reads nor acknowledges (the legacy event
	// stream leaves to-device messages and device lists to /sync); their token positions
	// stay as they were.
	skip map[string]bool
}

func (a *API) parseSync(ctx context.Context, r *http.Request, dev *userapi.Device) (*syncParams, error) {
	q := r.URL.Query()
	p := &syncParams{filter: &synctypes.Filter{}}
	if s := q.Get("since"); s != "" {
		tok, err := synctoken.ParseStream(s)
		if err != nil {
			return nil, httpapi.InvalidParam("Invalid since token")
		}
		p.since = &tok
	}
	if s := q.Get("timeout"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return nil, httpapi.InvalidParam("timeout must be a non-negative number of milliseconds")
		}
		p.timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	switch q.Get("full_state") {
	case "", "false":
	case "true":
		p.fullState = true
	default:
		return nil, httpapi.InvalidParam("full_state must be true or false")
	}
	switch sp := q.Get("set_presence"); sp {
	case "", "online", "offline", "unavailable":
		if a.presence != nil {
			state := sp
			if state == "" {
				state = "online"
			}
			if err := a.presence.SetFromSync(ctx, dev.UserID, state); err != nil {
				return nil, err
			}
		}
	default:
		return nil, httpapi.InvalidParam("set_presence must be online, offline or unavailable")
	}
	if f := q.Get("filter"); f != "" {
		raw := json.RawMessage(f)
		if !strings.HasPrefix(strings.TrimSpace(f), "{") {
			stored, err := a.users.Filter(ctx, dev.UserID, f)
			if errors.Is(err, userapi.ErrNotFound) {
				return nil, httpapi.InvalidParam("Unknown filter %q", f)
			} else if err != nil {
				return nil, err
			}
			raw = stored
		}
		if err := json.Unmarshal(raw, p.filter); err != nil {
			return nil, httpapi.InvalidParam("Invalid filter: %v", err)
		}
		if f := p.filter.EventFormat; f != "" && f != "client" && f != "federation" {
			return nil, httpapi.InvalidParam("event_format must be client or federation")
		}
	}
	return p, nil
}

// positions returns every stream's current position as a token.
func (a *API) positions(ctx context.Context) (synctoken.Stream, error) {
	tok := synctoken.Stream{Rooms: a.timeline.Load(), Others: make([]int64, len(synctypes.TokenOrder))}
	for i, name := range synctypes.TokenOrder {
		if name == synctypes.StreamAccountData {
			pos, err := a.db.StreamPosition(ctx, userapi.StreamAccountData)
			if err != nil {
				return tok, err
			}
			tok.Others[i] = pos
			continue
		}
		if src := a.source(name); src != nil {
			pos, err := src.Position(ctx)
			if err != nil {
				return tok, err
			}
			tok.Others[i] = pos
		}
	}
	return tok, nil
}

func (a *API) source(name string) synctypes.Source {
	for _, s := range a.sources {
		if s.Stream() == name {
			return s
		}
	}
	return nil
}

// other returns a token's position of a stream besides the timelines, 0 if the token is older
// than the stream.
func other(tok synctoken.Stream, name string) int64 {
	for i, n := range synctypes.TokenOrder {
		if n == name && i < len(tok.Others) {
			return tok.Others[i]
		}
	}
	return 0
}

// sync answers GET /sync (client-server API, "Syncing"): at once when anything is new for the
// user since the token (or there is no token), else when something arrives for them or the
// timeout passes.
func (a *API) sync(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	p, err := a.parseSync(ctx, r, dev)
	if err != nil {
		return err
	}
	if _, err := a.catchUp(ctx); err != nil {
		return err
	}
	resp, err := a.longPoll(ctx, dev, p)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// longPoll builds the sync response for p, waiting up to its timeout for something new when
// it has a since token.
func (a *API) longPoll(ctx context.Context, dev *userapi.Device, p *syncParams) (*synctypes.Response, error) {
	deadline := time.Now().Add(p.timeout)
	for {
		now, err := a.positions(ctx)
		if err != nil {
			return nil, err
		}
		var resp *synctypes.Response
		if p.since != nil {
			keep(&now, *p.since, p.skip)
		}
		if p.since == nil || p.fullState || ahead(now, *p.since) {
			// Streams move for everyone; only a built response tells whether anything is
			// for this user.
			if resp, err = a.build(ctx, dev, p, now); err != nil {
				return nil, err
			}
		}
		if resp != nil && (!resp.Empty() || p.since == nil || p.fullState) {
			return resp, nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			if resp == nil {
				// Nothing moved: answer from the positions alone, and let the sources drop
				// what the token acknowledges.
				if err := a.acknowledge(ctx, dev, *p.since, p.skip); err != nil {
					return nil, err
				}
				resp = synctypes.NewResponse()
				resp.NextBatch = p.since.String()
			}
			return resp, nil
		}
		if resp != nil {
			// Nothing for this user up to now: wait from here.
			next, err := synctoken.ParseStream(resp.NextBatch)
			if err != nil {
				return nil, err
			}
			p.since = &next
		}
		if err := a.wait(ctx, dev.UserID, *p.since, remaining, p.skip); errors.Is(err, notifier.ErrClosed) {
			// Shutting down: the client gets what there is and comes back.
			deadline = time.Now()
		} else if err != nil {
			return nil, err
		}
	}
}

// acknowledge passes a token's positions to the sources that delete what it confirms.
func (a *API) acknowledge(ctx context.Context, dev *userapi.Device, since synctoken.Stream, skip map[string]bool) error {
	req := &synctypes.Request{User: dev.UserID, Device: dev.DeviceID}
	for _, s := range a.sources {
		if ack, ok := s.(synctypes.Acknowledger); ok && !skip[s.Stream()] {
			if err := ack.Acknowledge(ctx, req, other(since, s.Stream())); err != nil {
				return err
			}
		}
	}
	return nil
}

// keep sets the positions of the skipped streams in now back to those of since.
func keep(now *synctoken.Stream, since synctoken.Stream, skip map[string]bool) {
	for i, name := range synctypes.TokenOrder {
		if skip[name] && i < len(now.Others) {
			now.Others[i] = other(since, name)
		}
	}
}

// ahead reports whether any stream of now is past since.
func ahead(now, since synctoken.Stream) bool {
	if now.Rooms > since.Rooms {
		return true
	}
	for i, pos := range now.Others {
		if i >= len(since.Others) || pos > since.Others[i] {
			if pos > 0 {
				return true
			}
		}
	}
	return false
}

// wait blocks until a stream moves for the user (a room they are in, or the user themself)
// or the timeout passes.
func (a *API) wait(ctx context.Context, user id.UserID, since synctoken.Stream, timeout time.Duration, skip map[string]bool) error {
	rooms, err := a.memberships(ctx, user)
	if err != nil {
		return err
	}
	keys := []string{userapi.UserKey(user)}
	for room, m := range rooms {
		if m == "join" {
			keys = append(keys, roomserver.RoomKey(room))
		}
	}
	sinceMap := map[string]int64{synctypes.StreamTimeline: since.Rooms, userapi.StreamAccountData: other(since, synctypes.StreamAccountData)}
	for _, s := range a.sources {
		if skip[s.Stream()] {
			sinceMap[s.Stream()] = math.MaxInt64 // never wakes this request
			continue
		}
		sinceMap[s.Stream()] = other(since, s.Stream())
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = a.nf.Wait(wctx, sinceMap, keys...)
	switch {
	case err == nil, errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err // the notifier is closing (notifier.ErrClosed)
}

// build assembles the response for the positions in (since, now].
func (a *API) build(ctx context.Context, dev *userapi.Device, p *syncParams, now synctoken.Stream) (*synctypes.Response, error) {
	resp := synctypes.NewResponse()
	var since synctoken.Stream
	if p.since != nil {
		since = *p.since
	}
	initial := p.since == nil || p.fullState
	req := &synctypes.Request{User: dev.UserID, Device: dev.DeviceID, Initial: initial, Filter: p.filter}
	rb := &roomsBuilder{a: a, dev: dev, p: p, since: since, now: now, initial: initial, resp: resp}
	if err := rb.build(ctx); err != nil {
		return nil, err
	}
	req.Joined, req.NewlyJoined = rb.joinedNow, rb.newlyJoined
	if err := a.accountData(ctx, req, rb, other(since, synctypes.StreamAccountData), other(now, synctypes.StreamAccountData), resp); err != nil {
		return nil, err
	}
	for i, name := range synctypes.TokenOrder {
		s := a.source(name)
		if s == nil {
			continue
		}
		from, to := other(since, name), other(now, name)
		if p.skip[name] {
			continue
		}
		if ls, ok := s.(synctypes.LimitedSource); ok {
			reached, err := ls.CollectLimited(ctx, req, from, to, resp)
			if err != nil {
				return nil, err
			}
			now.Others[i] = reached
			continue
		}
		if err := s.Collect(ctx, req, from, to, resp); err != nil {
			return nil, err
		}
	}
	if a.push != nil {
		if err := a.push.Fill(ctx, req, resp); err != nil {
			return nil, err
		}
	}
	resp.NextBatch = now.String()
	return resp, nil
}

// accountData fills the global and room account data changed in (from, to].
func (a *API) accountData(ctx context.Context, req *synctypes.Request, rb *roomsBuilder, from, to int64, resp *synctypes.Response) error {
	if from >= to && !req.Initial {
		return nil
	}
	if req.Initial {
		from = 0
	}
	entries, _, err := a.users.AccountDataSince(ctx, req.User, from)
	if err != nil {
		return err
	}
	var global, room *synctypes.EventFilter
	if req.Filter != nil {
		global = req.Filter.AccountData
		if req.Filter.Room != nil && req.Filter.Room.AccountData != nil {
			room = &req.Filter.Room.AccountData.EventFilter
		}
	}
	for _, e := range entries {
		if e.Position > to {
			continue
		}
		ev := map[string]any{"type": e.Type, "content": e.Content}
		if e.RoomID == "" {
			if typeAllowed(global, e.Type) && underLimit(global, len(resp.AccountData.Events)) {
				resp.AccountData.Add(ev)
			}
			continue
		}
		if !typeAllowed(room, e.Type) || !rb.roomAllowed(e.RoomID) {
			continue
		}
		switch rb.current[e.RoomID] {
		case "join":
			resp.JoinedRoom(e.RoomID).AccountData.Add(ev)
		case "leave", "ban":
			if lr := resp.Rooms.Leave[e.RoomID]; lr != nil {
				lr.AccountData.Add(ev)
			}
		}
	}
	return nil
}

func typeAllowed(f *synctypes.EventFilter, typ string) bool {
	if f == nil {
		return true
	}
	ef := roomEventFilter{Types: f.Types, NotTypes: f.NotTypes}
	return ef.matches(&syncstore.Event{Type: typ})
}

func underLimit(f *synctypes.EventFilter, n int) bool {
	return f == nil || f.Limit == nil || n < *f.Limit
}
