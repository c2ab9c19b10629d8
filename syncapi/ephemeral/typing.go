package ephemeral

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

const (
	// DefaultTypingTimeout applies when a client starts typing without a timeout.
	DefaultTypingTimeout = 30 * time.Second
	// MaxTypingTimeout caps a client's timeout, so a client that goes away without saying it
	// stopped leaves no one "typing" for long; clients renew every 20-30 s as the spec advises.
	MaxTypingTimeout = 120 * time.Second

	// typingLogAge and typingLogMax bound the memory of recent typing changes; a token older
	// than what is remembered gets every joined room's typing state.
	typingLogAge = 10 * time.Minute
	typingLogMax = 1 << 16
)

// Typing is who is typing in which room, kept in memory (client-server API, "Typing
// Notifications"), and the typing stream of /sync.
//
// A position is the time of a change in microseconds since the epoch, or one more than the last
// position when that is higher: positions increase, and a process starts above every position
// an earlier run handed out unless that run averaged over a million changes a second or the
// clock stepped back. A token from before a restart is therefore below the log's floor, and its
// holder is told the current (usually empty) typing state of every joined room once, which
// clears whatever it was shown before the restart.
type Typing struct {
	nf  *notifier.Notifier
	now func() time.Time
	pos atomic.Int64 // written under mu

	mu     sync.Mutex
	rooms  map[id.RoomID]map[id.UserID]*typer // rooms with someone typing
	log    *changeLog
	closed bool
}

// typer is one user typing in one room until its timer fires.
type typer struct{ timer *time.Timer }

var _ synctypes.Source = (*Typing)(nil)

func newTyping(nf *notifier.Notifier, now func() time.Time) *Typing {
	start := now().UnixMicro()
	t := &Typing{nf: nf, now: now, rooms: map[id.RoomID]map[id.UserID]*typer{}, log: newChangeLog(start, typingLogMax)}
	t.pos.Store(start)
	return t
}

// Set records that user started (for timeout) or stopped typing in the room. The caller has
// checked that the user may; a timeout above MaxTypingTimeout is cut to it.
func (t *Typing) Set(roomID id.RoomID, user id.UserID, typing bool, timeout time.Duration) {
	timeout = min(max(timeout, 0), MaxTypingTimeout)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	users := t.rooms[roomID]
	cur := users[user]
	if cur != nil {
		cur.timer.Stop()
	}
	if !typing {
		if cur != nil {
			t.remove(roomID, user)
		}
		return
	}
	// A renewal only moves the expiry: the room's list of typers is unchanged, so clients are
	// not told again.
	tp := &typer{}
	tp.timer = time.AfterFunc(timeout, func() { t.expire(roomID, user, tp) })
	if users == nil {
		users = map[id.UserID]*typer{}
		t.rooms[roomID] = users
	}
	users[user] = tp
	if cur == nil {
		t.changed(roomID)
	}
}

// expire ends tp's typing unless it was renewed or stopped since.
func (t *Typing) expire(roomID id.RoomID, user id.UserID, tp *typer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.rooms[roomID][user] != tp {
		return
	}
	t.remove(roomID, user)
}

// remove takes a typer out; t.mu is held.
func (t *Typing) remove(roomID id.RoomID, user id.UserID) {
	users := t.rooms[roomID]
	delete(users, user)
	if len(users) == 0 {
		delete(t.rooms, roomID)
	}
	t.changed(roomID)
}

// changed gives the room's new typing list a position and wakes the room's members; t.mu is
// held.
func (t *Typing) changed(roomID id.RoomID) {
	now := t.now().UnixMicro()
	pos := max(t.pos.Load()+1, now)
	t.log.add(change{pos: pos, room: roomID})
	t.log.forgetBefore(now - typingLogAge.Microseconds())
	t.pos.Store(pos)
	if t.nf != nil {
		t.nf.Notify(synctypes.StreamTyping, pos, roomserver.RoomKey(roomID))
	}
}

// close stops every timer.
func (t *Typing) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, users := range t.rooms {
		for _, tp := range users {
			tp.timer.Stop()
		}
	}
}

// Typers returns who is typing in the room, sorted.
func (t *Typing) Typers(roomID id.RoomID) []id.UserID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.typers(roomID)
}

func (t *Typing) typers(roomID id.RoomID) []id.UserID {
	users := t.rooms[roomID]
	out := make([]id.UserID, 0, len(users))
	for u := range users {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// Stream is synctypes.StreamTyping.
func (t *Typing) Stream() string { return synctypes.StreamTyping }

// Position is the latest typing position.
func (t *Typing) Position(context.Context) (int64, error) { return t.pos.Load(), nil }

// typingEvent is the m.typing event of a room's typing list.
type typingEvent struct {
	Type    string `json:"type"`
	Content struct {
		UserIDs []id.UserID `json:"user_ids"`
	} `json:"content"`
}

// Collect gives each joined room whose typing list changed in (from, to] an m.typing event
// with its current list; an initial sync, or a token from before the stream, gets the rooms
// where someone is typing. Its cost is a binary search of the log, then, only when some room
// changed in the window, a map lookup per joined room.
func (t *Typing) Collect(_ context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) error {
	if !req.Initial && from >= to && len(req.NewlyJoined) == 0 {
		return nil
	}
	type roomEvent struct {
		room id.RoomID
		ev   *typingEvent
	}
	var out []roomEvent
	// A token without a typing position (0) has seen no typing: like an initial sync it needs
	// only the rooms where someone types.
	fresh := req.Initial || from == 0
	window := from > 0 && from < to
	t.mu.Lock()
	// all: the window reaches into forgotten changes, so every joined room is told its list.
	all := window && !t.log.covers(from)
	changes := window && !all && t.log.any(from, to)
	if !all && !changes && !fresh && len(req.NewlyJoined) == 0 {
		t.mu.Unlock()
		return nil
	}
	for _, room := range req.Joined {
		// A room joined since the token is fresh: it needs only its list if someone types.
		roomFresh := fresh || slices.Contains(req.NewlyJoined, room)
		if !all && !(changes && t.log.changedAfter(room, "", from)) && (!roomFresh || len(t.rooms[room]) == 0) {
			continue
		}
		if !ephemeralWanted(req.Filter, room, "m.typing") {
			continue
		}
		ev := &typingEvent{Type: "m.typing"}
		ev.Content.UserIDs = t.typers(room)
		out = append(out, roomEvent{room, ev})
	}
	t.mu.Unlock()
	for _, re := range out {
		raw, err := json.Marshal(re.ev)
		if err != nil {
			return err
		}
		resp.JoinedRoom(re.room).Ephemeral.Add(json.RawMessage(raw))
	}
	return nil
}
