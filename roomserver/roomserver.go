package roomserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// maxPrevEvents bounds the prev_events of a new event (server-server API, "PDUs").
const maxPrevEvents = 20

// Errors the API answers with.
var (
	ErrRoomNotFound = errors.New("roomserver: unknown room")
	ErrNotAllowed   = errors.New("roomserver: not allowed") // the auth rules refused the event
)

// RoomKey is the notifier key for what happens in one room.
func RoomKey(r id.RoomID) string { return "room:" + string(r) }

// OutputKey is the notifier key woken for every event of the output stream, under the stream
// name roomstore.StreamOutput: the key consumers of the whole stream wait on.
const OutputKey = "roomserver:output"

// Template is a new local event before the roomserver places it in the room.
type Template struct {
	Type     string
	StateKey *string
	Sender   id.UserID
	Content  json.RawMessage
	Redacts  id.EventID
	// Txn is the sending device's transaction ID; a second Send with the same one in the same
	// room returns the first event instead of sending another.
	Txn *Txn
}

// Txn names a client's request to send an event (client-server API, "Transaction identifiers").
type Txn struct {
	DeviceID id.DeviceID
	TxnID    string
}

// OutputEvent is one event of the output stream.
type OutputEvent struct {
	Pos   int64
	Event *pdu.Event
	// Txn is set when a local device sent the event with a transaction ID, for its sync.
	Txn *Txn
}

// API is what the roomserver offers the rest of Lattice.
type API interface {
	// CreateRoom creates a room with its initial events and returns its ID.
	CreateRoom(ctx context.Context, req CreateRoomRequest) (id.RoomID, error)
	// Send places a new local event in a room: on its current state, authorised against it
	// (ErrNotAllowed, wrapping the rule that failed), and committed with its output position.
	Send(ctx context.Context, roomID id.RoomID, t Template) (*pdu.Event, error)
	// RoomVersion returns a room's version, ErrRoomNotFound if the server has no such room.
	RoomVersion(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error)
	// CurrentState returns a room's current state.
	CurrentState(ctx context.Context, roomID id.RoomID) (map[auth.StateKey]*pdu.Event, error)
	// StateEvent returns one piece of a room's current state, nil if absent.
	StateEvent(ctx context.Context, roomID id.RoomID, typ, stateKey string) (*pdu.Event, error)
	// Event returns an event by ID, nil if unknown.
	Event(ctx context.Context, eventID id.EventID) (*pdu.Event, error)
	// StateBefore returns the state of the room just before an event.
	StateBefore(ctx context.Context, eventID id.EventID) (map[auth.StateKey]*pdu.Event, error)

	// InputOutlier stores an event from another server whose state is unknown (input.go).
	InputOutlier(ctx context.Context, ev *pdu.Event) error
	// InputOutliers is InputOutlier for many events, auth events first.
	InputOutliers(ctx context.Context, evs []*pdu.Event) error
	// InputRemote takes a new timeline event in from another server (inputremote.go).
	InputRemote(ctx context.Context, ev *pdu.Event, stateBefore []*pdu.Event) error
	// StateAfter returns the state of the room just after an event.
	StateAfter(ctx context.Context, eventID id.EventID) (map[auth.StateKey]*pdu.Event, error)
	// StateIDsAfter returns the state just after an event as event IDs, without parsing events.
	StateIDsAfter(ctx context.Context, eventID id.EventID) (map[auth.StateKey]id.EventID, error)
	// Members returns the users with the given membership in the room's current state.
	Members(ctx context.Context, roomID id.RoomID, membership string) ([]id.UserID, error)
	// AuthChain returns the auth chain of events, auth events before what they authorise.
	AuthChain(ctx context.Context, eventIDs []id.EventID) ([]*pdu.Event, error)
	// MissingEvents walks prev_events back from latest to earliest (/get_missing_events).
	MissingEvents(ctx context.Context, roomID id.RoomID, earliest, latest []id.EventID, limit int) ([]*pdu.Event, error)

	// Output returns up to limit events of the output stream after position from, in order.
	Output(ctx context.Context, from int64, limit int) ([]OutputEvent, error)
	// OutputPosition is the output stream's latest position.
	OutputPosition(ctx context.Context) (int64, error)

	// CreateAlias makes a local alias point to a room (ErrAliasTaken if it points anywhere).
	CreateAlias(ctx context.Context, a Alias) error
	// ResolveAlias returns what a local alias points to (ErrAliasNotFound).
	ResolveAlias(ctx context.Context, alias id.RoomAlias) (Alias, error)
	// DeleteAlias removes a local alias (ErrAliasNotFound).
	DeleteAlias(ctx context.Context, alias id.RoomAlias) error
	// RoomAliases returns the local aliases of a room.
	RoomAliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error)
	// ReportEvent stores a user's report of an event.
	ReportEvent(ctx context.Context, rep Report) error
	// JoinAuthoriser returns, for a restricted room the user may join, a local member who can
	// authorise the join (join_authorised_via_users_server); "" when the room is not restricted
	// or the user needs no authorisation; ErrNotAllowed when the user meets no allow condition.
	JoinAuthoriser(ctx context.Context, roomID id.RoomID, user id.UserID) (id.UserID, error)
	// RoomsOf returns the rooms where a local user's current membership is membership.
	RoomsOf(ctx context.Context, user id.UserID, membership string) ([]id.RoomID, error)
	// StateAtPosition returns the room's state after its last output event at or before pos.
	StateAtPosition(ctx context.Context, roomID id.RoomID, pos int64) (map[auth.StateKey]*pdu.Event, error)
	// StreamPosition returns an event's output-stream position, 0 if it was never output.
	StreamPosition(ctx context.Context, eventID id.EventID) (int64, error)
	// LatestEvent returns the ID of the room's newest event (its deepest forward extremity).
	LatestEvent(ctx context.Context, roomID id.RoomID) (id.EventID, error)
	// SetPublished adds a room to the public room directory or takes it off.
	SetPublished(ctx context.Context, roomID id.RoomID, published bool) error
	// Published reports whether a room is in the public room directory.
	Published(ctx context.Context, roomID id.RoomID) (bool, error)
	// PublishedRooms returns the rooms of the public room directory.
	PublishedRooms(ctx context.Context) ([]id.RoomID, error)
}

// Options configures the roomserver.
type Options struct {
	ServerName string
	SigningKey *federation.SigningKey
	Notifier   *notifier.Notifier
	Logger     *slog.Logger
	// KeyRing verifies the signatures of events from other servers; nil means the caller has.
	KeyRing pdu.KeyRing
	// EventCacheBytes bounds the cache of parsed events (0: DefaultEventCacheBytes).
	EventCacheBytes int64
}

// Roomserver is the room component.
type Roomserver struct {
	opts  Options
	db    *storage.DB
	store *roomstore.Store
	now   func() time.Time

	locks sync.Map // room ID → *sync.Mutex: one writer per room, rooms in parallel

	mu    sync.Mutex
	rooms map[id.RoomID]*roomCache // bounded by maxCachedRooms and maxStateEntries
	// maxStateEntries bounds the state entries of all cached rooms (maxCachedStateEntries).
	maxStateEntries int

	events   *eventCache
	versions sync.Map // room NID → id.RoomVersion
}

var _ API = (*Roomserver)(nil)

// New opens the roomserver's storage.
func New(ctx context.Context, db *storage.DB, opts Options) (*Roomserver, error) {
	store, err := roomstore.Open(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("roomserver: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Roomserver{opts: opts, db: db, store: store, now: time.Now, rooms: map[id.RoomID]*roomCache{}, maxStateEntries: maxCachedStateEntries,
		events: newEventCache(opts.EventCacheBytes)}, nil
}

// lock serialises writers of one room.
func (r *Roomserver) lock(roomID id.RoomID) func() {
	m, _ := r.locks.LoadOrStore(roomID, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// CreateRoom creates a room from a createRoom request (client-server API, "Creation").
func (r *Roomserver) CreateRoom(ctx context.Context, req CreateRoomRequest) (id.RoomID, error) {
	version, events, err := InitialEvents(req)
	if errors.Is(err, ErrUnsupportedVersion) {
		return "", err
	} else if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	// Every event is built and checked against the state the earlier ones make before any is
	// stored, so a request the auth rules refuse leaves no half-made room behind.
	createTmpl := Template{Type: events[0].Type, StateKey: ptr(""), Sender: req.Creator, Content: events[0].Content}
	var roomID id.RoomID
	if !version.RoomIDIsCreateEventID() {
		roomID = id.RoomID("!" + randomID() + ":" + r.opts.ServerName)
	}
	create, err := r.build(ctx, version, roomID, createTmpl, nil, nil, 1)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	roomID = create.RoomID()
	state := stateMap{}
	built := []*pdu.Event{create}
	for i, se := range events {
		ev := create
		if i > 0 {
			t := Template{Type: se.Type, StateKey: ptr(se.StateKey), Sender: req.Creator, Content: se.Content}
			var authIDs []id.EventID
			for _, k := range auth.Selection(&templateEvent{t: t, roomID: roomID, version: version}) {
				if a := state[k]; a != nil {
					authIDs = append(authIDs, a.EventID())
				}
			}
			last := built[len(built)-1]
			if ev, err = r.build(ctx, version, roomID, t, []id.EventID{last.EventID()}, authIDs, last.Depth()+1); err != nil {
				return "", fmt.Errorf("%w: initial %s event: %w", ErrBadRequest, se.Type, err)
			}
			built = append(built, ev)
		}
		if err := auth.Check(ev, state); err != nil {
			return "", fmt.Errorf("%w: initial %s event: %v", ErrNotAllowed, se.Type, err)
		}
		state[auth.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = ev
	}
	unlock := r.lock(roomID)
	defer unlock()
	if err := r.commit(ctx, roomID, version, create, true, nil); err != nil {
		return "", err
	}
	if req.BeforeInitialState != nil {
		if err := req.BeforeInitialState(roomID); err != nil {
			return "", err
		}
	}
	for _, ev := range built[1:] {
		if err := r.commit(ctx, roomID, version, ev, false, nil); err != nil {
			return "", fmt.Errorf("initial %s event: %w", ev.Type(), err)
		}
	}
	return roomID, nil
}

// Send places a new local event in a room.
func (r *Roomserver) Send(ctx context.Context, roomID id.RoomID, t Template) (*pdu.Event, error) {
	unlock := r.lock(roomID)
	defer unlock()
	return r.sendLocked(ctx, roomID, t)
}

func (r *Roomserver) sendLocked(ctx context.Context, roomID id.RoomID, t Template) (*pdu.Event, error) {
	rc, err := r.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var txn *roomstore.Txn
	if t.Txn != nil {
		txn = &roomstore.Txn{UserID: string(t.Sender), DeviceID: string(t.Txn.DeviceID), TxnID: t.Txn.TxnID}
		// Under the room's lock, so a retry racing the first request waits for it.
		nid, err := r.store.TxnEvent(ctx, r.db, rc.nid, *txn)
		if err != nil {
			return nil, err
		}
		if nid != 0 {
			evs, err := r.eventsByNID(ctx, []int64{nid})
			if err != nil {
				return nil, err
			}
			return evs[nid], nil
		}
	}
	// prev_events: the forward extremities, newest first, at most maxPrevEvents.
	prev := rc.extremities
	if len(prev) > maxPrevEvents {
		prev = prev[len(prev)-maxPrevEvents:]
	}
	var depth int64
	prevIDs := make([]id.EventID, len(prev))
	for i, p := range prev {
		prevIDs[i] = p.EventID()
		depth = max(depth, p.Depth())
	}
	// auth_events: what the auth rules consult for this event, from the current state
	// (server-server API, "Auth events selection").
	sel := auth.Selection(&templateEvent{t: t, roomID: roomID, version: rc.version})
	var authIDs []id.EventID
	for _, k := range sel {
		if ev := rc.state[k]; ev != nil {
			authIDs = append(authIDs, ev.EventID())
		}
	}
	ev, err := r.build(ctx, rc.version, roomID, t, prevIDs, authIDs, depth+1)
	if err != nil {
		return nil, err
	}
	if err := auth.Check(ev, rc.view()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAllowed, err)
	}
	if err := r.commit(ctx, roomID, rc.version, ev, false, txn); err != nil {
		return nil, err
	}
	return ev, nil
}

func (r *Roomserver) build(ctx context.Context, version id.RoomVersion, roomID id.RoomID, t Template, prev, authEvents []id.EventID, depth int64) (*pdu.Event, error) {
	return pdu.Build(version, pdu.Template{
		Type: t.Type, StateKey: t.StateKey, Sender: t.Sender, Content: t.Content, RoomID: roomID,
		PrevEvents: prev, AuthEvents: authEvents, Depth: depth, OriginServerTS: r.now().UnixMilli(), Redacts: t.Redacts,
	}, r.opts.ServerName, r.opts.SigningKey)
}

// commit stores a new event of a room with its state, auth chain, extremities and output
// position in one transaction, then updates the caches and wakes the room's waiters.
func (r *Roomserver) commit(ctx context.Context, roomID id.RoomID, version id.RoomVersion, ev *pdu.Event, newRoom bool, txn *roomstore.Txn) error {
	var rc *roomCache
	if !newRoom {
		var err error
		if rc, err = r.room(ctx, roomID); err != nil {
			return err
		}
	}
	rec := &roomstore.Event{
		EventID: string(ev.EventID()), Type: ev.Type(), StateKey: ev.StateKey(),
		Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), JSON: ev.JSON(),
	}
	var snapshot int64
	err := r.db.WithTx(ctx, func(tx *storage.Tx) error {
		var roomNID int64
		if newRoom {
			var err error
			if roomNID, err = r.store.CreateRoom(ctx, tx, string(roomID), string(version)); err != nil {
				return err
			}
		} else {
			roomNID = rc.nid
			rec.StateBefore = rc.snapshot
		}
		rec.RoomNID = roomNID
		authNIDs, err := r.eventNIDs(ctx, tx, ev.AuthEventIDs())
		if err != nil {
			return err
		}
		if _, err := r.store.InsertEvent(ctx, tx, rec); err != nil {
			return err
		}
		if txn != nil {
			if err := r.store.InsertTxn(ctx, tx, roomNID, rec.NID, *txn); err != nil {
				return err
			}
		}
		if err := r.recordLocalMembership(ctx, tx, roomNID, rec.NID, ev); err != nil {
			return err
		}
		snapshot = rec.StateBefore
		if sk := ev.StateKey(); sk != nil {
			keys, err := r.store.StateKeyNIDs(ctx, tx, []roomstore.StateKey{{Type: ev.Type(), StateKey: *sk}})
			if err != nil {
				return err
			}
			if snapshot, err = roomstore.AddSnapshot(ctx, tx, roomNID, rec.StateBefore, []roomstore.Entry{{Key: keys[0], Event: rec.NID}}); err != nil {
				return err
			}
			if err := r.store.Chains.Add(ctx, tx, roomNID, rec.NID, authNIDs); err != nil {
				return err
			}
			if err := r.store.SetCurrentState(ctx, tx, roomNID, snapshot); err != nil {
				return err
			}
		}
		prevNIDs, err := r.eventNIDs(ctx, tx, ev.PrevEventIDs())
		if err != nil {
			return err
		}
		if err := r.store.UpdateForwardExtremities(ctx, tx, roomNID, rec.NID, prevNIDs); err != nil {
			return err
		}
		// Allocated last: the output stream's counter row stays locked until commit.
		if rec.StreamPos, err = tx.NextStreamPosition(ctx, roomstore.StreamOutput); err != nil {
			return err
		}
		return r.store.UpdateEvent(ctx, tx, rec)
	})
	if err != nil {
		r.forget(roomID) // the cache may hold what the failed transaction assumed
		r.store.Chains.Forget(rec.NID)
		return fmt.Errorf("store event %s: %w", ev.EventID(), err)
	}
	r.events.put(rec.NID, ev)
	r.applyToCache(roomID, version, rec, snapshot, ev)
	if r.opts.Notifier != nil {
		r.opts.Notifier.Notify(roomstore.StreamOutput, rec.StreamPos, RoomKey(roomID), OutputKey)
	}
	return nil
}

// eventNIDs maps event IDs to their numbers; every one must be stored.
func (r *Roomserver) eventNIDs(ctx context.Context, q storage.Querier, ids []id.EventID) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	strs := make([]string, len(ids))
	for i, e := range ids {
		strs[i] = string(e)
	}
	evs, err := r.store.EventsByID(ctx, q, strs)
	if err != nil {
		return nil, err
	}
	if len(evs) != len(ids) {
		return nil, fmt.Errorf("%d of %d referenced events are not stored", len(ids)-len(evs), len(ids))
	}
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.NID
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Output returns up to limit events of the output stream after position from, in order.
func (r *Roomserver) Output(ctx context.Context, from int64, limit int) ([]OutputEvent, error) {
	recs, err := r.store.Output(ctx, r.db, from, limit)
	if err != nil {
		return nil, err
	}
	out := make([]OutputEvent, len(recs))
	for i, rec := range recs {
		ev, ok := r.events.byNumber(rec.NID)
		if !ok {
			v, err := r.versionOf(ctx, r.db, rec.RoomNID)
			if err != nil {
				return nil, err
			}
			if ev, err = pdu.ParseStored(v, rec.JSON, id.EventID(rec.EventID)); err != nil {
				return nil, fmt.Errorf("stored event %s: %w", rec.EventID, err)
			}
		}
		out[i] = OutputEvent{Pos: rec.StreamPos, Event: ev}
		if rec.Txn != nil {
			out[i].Txn = &Txn{DeviceID: id.DeviceID(rec.Txn.DeviceID), TxnID: rec.Txn.TxnID}
		}
	}
	return out, nil
}

// OutputPosition is the output stream's latest position, 0 before the first event.
func (r *Roomserver) OutputPosition(ctx context.Context) (int64, error) {
	return r.store.OutputPosition(ctx)
}
