// Package presence tracks whether local users are online, unavailable (idle) or offline and
// their status messages (client-server API, "Presence"). It serves GET and PUT
// /presence/{userId}/status, takes /sync's set_presence, and is the /sync source of the
// presence section.
//
// Storage and positions (design principle 2): one row per local user in storage/presencestore,
// overwritten in place at a new position of the presence stream whenever what clients see
// changes, and committed before the request that caused it is answered. After each commit the
// notifier is woken with the user's UserKey and the RoomKey of each room they are joined to,
// the keys co-members' long-polls wait on. Rows are never deleted.
//
// Transitions:
//   - PUT sets the state and status message and counts as activity.
//   - /sync with set_presence online (the default) marks the user connected. It brings an
//     offline user online, and an unavailable one only when a sync made them unavailable:
//     idleness the server found, or that the user chose with PUT, ends only with activity.
//     set_presence unavailable makes the user unavailable; offline changes nothing.
//   - Activity (Touch, and every event a local user sends, seen on the roomserver's output
//     stream) brings an unavailable user online. An offline user stays offline: they hide.
//   - A periodic sweep, not a timer per user, makes an online user without activity for
//     IdleAfter unavailable ("Idle timeout"), and one with no sync or PUT for OfflineAfter
//     offline ("offline: not connected to an event stream").
//
// Hot paths do not write: a sync or activity of a user who stays online only updates memory.
// currently_active is true exactly while the user is online, so a newer last activity alone
// needs no update to clients ("Last active ago") and takes no position; the sweep writes it
// when it is FlushAfter newer than the stored one, so a crash loses at most that plus one sweep
// interval of the last activity time, never a state. A local user joining a room is
// re-announced at a new position, so that the room's members learn their presence.
//
// Who sees whom: a user sees their own presence and that of everyone joined to a room they are
// joined to. An incremental sync reads the rows changed in its range and keeps those of users
// who share one of its rooms, judged from each changed user's joined rooms, cached per user
// (rooms.go); an initial sync takes the members of its rooms from the roomserver and the
// presence of those not offline from memory. Neither reads anything per user of the server.
//
// The component keeps the current state of users not offline in memory and assumes it is the
// only writer of the presence table: one process runs it.
//
// Lock order: writeMu (one writer of the presence stream at a time, held across the database
// write) comes before mu (the records); mu and the room cache's lock are leaves.
package presence

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/presencestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// The presence states (client-server API, "Presence").
const (
	Online      = "online"
	Unavailable = "unavailable"
	Offline     = "offline"
)

// Who set a state, stored with it: it decides whether a sync may end an unavailable state.
const (
	byUser   = "user"   // PUT /presence
	bySync   = "sync"   // /sync's set_presence
	byServer = "server" // the sweep, or activity
)

// Defaults of the timing options.
const (
	DefaultIdleAfter    = 5 * time.Minute // the spec's example threshold
	DefaultOfflineAfter = 3 * time.Minute // above the 30 s long-polls of common clients
	DefaultSweepEvery   = 15 * time.Second
	DefaultFlushAfter   = time.Minute
)

// Rooms is what presence needs of the roomserver.
type Rooms interface {
	RoomsOf(ctx context.Context, user id.UserID, membership string) ([]id.RoomID, error)
	Members(ctx context.Context, roomID id.RoomID, membership string) ([]id.UserID, error)
	StateEvent(ctx context.Context, roomID id.RoomID, typ, stateKey string) (*pdu.Event, error)
	Output(ctx context.Context, from int64, limit int) ([]roomserver.OutputEvent, error)
	OutputPosition(ctx context.Context) (int64, error)
}

var _ Rooms = roomserver.API(nil)

// Options configures presence.
type Options struct {
	DB         *storage.DB
	Rooms      Rooms
	Users      userapi.API
	Notifier   *notifier.Notifier
	Logger     *slog.Logger
	ServerName string
	// Enabled false stores and delivers nothing: everyone appears offline.
	Enabled bool

	// IdleAfter, OfflineAfter, SweepEvery and FlushAfter tune the sweep (0: the defaults).
	IdleAfter, OfflineAfter, SweepEvery, FlushAfter time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Tracker is the presence component.
type Tracker struct {
	opts  Options
	store *presencestore.Store
	log   *slog.Logger
	rooms *roomCache

	writeMu sync.Mutex
	mu      sync.Mutex
	// records holds every user who is not offline (the sweep watches them) and others seen
	// lately; the sweep evicts offline ones, which the database then answers for.
	records map[id.UserID]*record
	pos     atomic.Int64 // the latest committed position

	cursor    atomic.Int64 // the consumer's position on the output stream
	startOnce sync.Once
	started   bool // Start read the output position; consumeLoop does otherwise
	stop      context.CancelFunc
	done      sync.WaitGroup
}

var _ synctypes.Source = (*Tracker)(nil)

// record is one user's presence in memory. state, status, setBy, pos and exists mirror the
// row and change only under writeMu; the times only grow, under mu.
type record struct {
	state  string
	status *string
	setBy  string
	pos    int64
	exists bool // the user has a row

	active int64 // last activity, ms since the epoch (0: never)
	stored int64 // last_active_ts of the row
	seen   int64 // last sync or PUT that marked the user connected (0: none)
}

func fromRow(p *presencestore.Presence) *record {
	return &record{state: p.State, status: p.StatusMsg, setBy: p.SetBy, pos: p.Pos, exists: true,
		active: p.LastActiveTS, stored: p.LastActiveTS}
}

// New opens the presence store and loads the users who are not offline, who count as seen now
// so that a restart gives their clients OfflineAfter to come back.
func New(ctx context.Context, opts Options) (*Tracker, error) {
	store, err := presencestore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	orDefault(&opts.IdleAfter, DefaultIdleAfter)
	orDefault(&opts.OfflineAfter, DefaultOfflineAfter)
	orDefault(&opts.SweepEvery, DefaultSweepEvery)
	orDefault(&opts.FlushAfter, DefaultFlushAfter)
	t := &Tracker{opts: opts, store: store, log: opts.Logger.With("component", "presence"),
		rooms: newRoomCache(opts.Rooms, opts.Enabled), records: map[id.UserID]*record{}}
	if !opts.Enabled {
		return t, nil
	}
	pos, err := store.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	t.pos.Store(pos)
	rows, err := store.NotOffline(ctx)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	now := t.nowMS()
	for i := range rows {
		r := fromRow(&rows[i])
		r.seen = now
		t.records[id.UserID(rows[i].UserID)] = r
	}
	return t, nil
}

func orDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func (t *Tracker) nowMS() int64 { return t.opts.Now().UnixMilli() }

func (t *Tracker) isLocal(u id.UserID) bool {
	return strings.HasSuffix(string(u), ":"+t.opts.ServerName)
}

// SetFromSync applies /sync's set_presence ("online" when the client left it out).
func (t *Tracker) SetFromSync(ctx context.Context, user id.UserID, state string) error {
	switch state {
	case Offline:
		return nil // "the client is not marked as being online when it uses this API"
	case Online, Unavailable:
	default:
		return httpapi.InvalidParam("set_presence must be online, offline or unavailable")
	}
	if !t.opts.Enabled {
		return nil
	}
	now := t.nowMS()
	t.mu.Lock()
	if r := t.records[user]; r != nil && !syncChanges(r, state) {
		r.seen = max(r.seen, now)
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	return t.mutate(ctx, []id.UserID{user}, func(_ id.UserID, r *record) bool {
		r.seen = max(r.seen, now)
		if !syncChanges(r, state) {
			return false
		}
		if state == Online {
			r.active = max(r.active, now) // "changing presence state to online" is activity
		}
		r.state, r.setBy = state, bySync
		return true
	})
}

// syncChanges reports whether a sync with set_presence state changes r's state.
func syncChanges(r *record, state string) bool {
	switch {
	case r.state == state:
		return false
	case state == Online:
		return r.state == Offline || r.setBy == bySync
	default: // unavailable
		return true
	}
}

// Touch records activity of a local user, such as sending an event.
func (t *Tracker) Touch(ctx context.Context, user id.UserID) error {
	if !t.opts.Enabled {
		return nil
	}
	return t.touch(ctx, map[id.UserID]int64{user: t.nowMS()}, nil)
}

// touch records activity of users at the given times (ms), and re-announces those of
// reannounce who are not offline (to the members of a room they just joined) at a new position.
// Activity older than the last one known, such as an event the consumer reads after the user
// chose a state with PUT, changes no state.
func (t *Tracker) touch(ctx context.Context, active map[id.UserID]int64, reannounce map[id.UserID]bool) error {
	var slow []id.UserID
	t.mu.Lock()
	for u, ts := range active {
		// An online user stays online: memory only.
		if r := t.records[u]; r != nil && r.state == Online && !reannounce[u] {
			r.active = max(r.active, ts)
			continue
		}
		slow = append(slow, u)
	}
	t.mu.Unlock()
	for u := range reannounce {
		if _, ok := active[u]; !ok {
			slow = append(slow, u)
		}
	}
	if len(slow) == 0 {
		return nil
	}
	return t.mutate(ctx, slow, func(u id.UserID, r *record) bool {
		changed := false
		if ts, ok := active[u]; ok {
			if ts > r.active && r.state == Unavailable {
				r.state, r.setBy, changed = Online, byServer, true
			}
			r.active = max(r.active, ts)
		}
		return changed || (reannounce[u] && r.state != Offline)
	})
}

// set applies PUT /presence/{userId}/status.
func (t *Tracker) set(ctx context.Context, user id.UserID, state string, status *string) error {
	now := t.nowMS()
	return t.mutate(ctx, []id.UserID{user}, func(_ id.UserID, r *record) bool {
		r.active = max(r.active, now) // "the activity time is updated"
		if state != Offline {
			r.seen = max(r.seen, now)
		}
		changed := !r.exists || r.state != state || r.setBy != byUser || !sameStatus(r.status, status)
		r.state, r.status, r.setBy = state, status, byUser
		return changed
	})
}

func sameStatus(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// load returns the user's record, reading the row into memory when absent. writeMu must be held.
func (t *Tracker) load(ctx context.Context, user id.UserID) (*record, error) {
	t.mu.Lock()
	r := t.records[user]
	t.mu.Unlock()
	if r != nil {
		return r, nil
	}
	row, err := t.store.Get(ctx, string(user))
	if err != nil {
		return nil, err
	}
	r = &record{state: Offline}
	if row != nil {
		r = fromRow(row)
	}
	t.mu.Lock()
	t.records[user] = r
	t.mu.Unlock()
	return r, nil
}

// peek returns a copy of the user's record without keeping a row it had to read.
func (t *Tracker) peek(ctx context.Context, user id.UserID) (record, error) {
	t.mu.Lock()
	r := t.records[user]
	var c record
	if r != nil {
		c = *r
	}
	t.mu.Unlock()
	if r != nil {
		return c, nil
	}
	row, err := t.store.Get(ctx, string(user))
	if err != nil || row == nil {
		return record{state: Offline}, err
	}
	return *fromRow(row), nil
}

// mutate runs fn on a copy of each user's record and writes the copies fn reports changed for
// clients in one transaction, at new positions; then it wakes their rooms.
func (t *Tracker) mutate(ctx context.Context, users []id.UserID, fn func(id.UserID, *record) bool) error {
	t.writeMu.Lock()
	written, err := t.mutateLocked(ctx, users, fn)
	t.writeMu.Unlock()
	t.notify(ctx, written)
	return err
}

// maxWriteBatch bounds the rows of one transaction.
const maxWriteBatch = 500

// mutateLocked is mutate with writeMu held; it returns what it wrote, for notify.
func (t *Tracker) mutateLocked(ctx context.Context, users []id.UserID, fn func(id.UserID, *record) bool) ([]presencestore.Presence, error) {
	var written []presencestore.Presence
	for len(users) > 0 {
		batch := users[:min(len(users), maxWriteBatch)]
		users = users[len(batch):]
		var rows []presencestore.Presence
		var recs, next []*record
		for _, u := range batch {
			r, err := t.load(ctx, u)
			if err != nil {
				return written, err
			}
			t.mu.Lock()
			c := *r
			t.mu.Unlock()
			if !fn(u, &c) {
				t.mu.Lock()
				r.active, r.seen = max(r.active, c.active), max(r.seen, c.seen)
				t.mu.Unlock()
				continue
			}
			rows = append(rows, presencestore.Presence{UserID: string(u), State: c.state, StatusMsg: c.status, SetBy: c.setBy, LastActiveTS: c.active})
			recs, next = append(recs, r), append(next, &c)
		}
		if err := t.store.Write(ctx, rows); err != nil {
			return written, err
		}
		t.mu.Lock()
		for i, r := range recs {
			c := next[i]
			r.state, r.status, r.setBy, r.pos, r.exists = c.state, c.status, c.setBy, rows[i].Pos, true
			r.active, r.seen = max(r.active, c.active), max(r.seen, c.seen)
			r.stored = max(r.stored, c.active)
		}
		t.mu.Unlock()
		if len(rows) > 0 {
			t.pos.Store(rows[len(rows)-1].Pos)
		}
		written = append(written, rows...)
	}
	return written, nil
}

// notify wakes the long-polls of everyone who shares a room with a user whose presence was
// written, and the user's own.
func (t *Tracker) notify(ctx context.Context, written []presencestore.Presence) {
	if t.opts.Notifier == nil {
		return
	}
	ctx = context.WithoutCancel(ctx) // the change is committed: wake others even if the caller left
	for _, p := range written {
		u := id.UserID(p.UserID)
		keys := []string{userapi.UserKey(u)}
		rooms, err := t.rooms.joined(ctx, u)
		if err != nil {
			// The change is stored: co-members get it with their next wake-up.
			t.log.Warn("rooms of a user whose presence changed", "user", u, "error", err)
		}
		for r := range rooms {
			keys = append(keys, roomserver.RoomKey(r))
		}
		t.opts.Notifier.Notify(synctypes.StreamPresence, p.Pos, keys...)
	}
}
