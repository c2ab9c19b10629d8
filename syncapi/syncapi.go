// Package syncapi serves what clients read of rooms: /messages, /context, single events and
// relations, from its own copy of the timelines that it keeps by consuming the roomserver's
// output stream (design principle 2). /sync joins it in a later step.
package syncapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// Options configures the sync component.
type Options struct {
	DB       *storage.DB
	Rooms    roomserver.API
	Users    userapi.API
	Notifier *notifier.Notifier
	Logger   *slog.Logger
	// Sources are the streams of the sync token besides the timelines and account data.
	Sources []synctypes.Source
	// Presence, if set, receives /sync's set_presence.
	Presence PresenceSetter
	// Push, if set, evaluates push rules as events are stored and fills the unread counts.
	Push Pusher
}

// Pusher is the push component as the sync component uses it (syncapi/push).
type Pusher interface {
	// Process evaluates an event being stored, in the storing transaction.
	Process(ctx context.Context, tx *storage.Tx, oe roomserver.OutputEvent, clientJSON []byte) error
	// Reset drops what Process cached after a transaction that failed.
	Reset()
	// Fill puts the unread notification counts into the response's joined rooms.
	Fill(ctx context.Context, req *synctypes.Request, resp *synctypes.Response) error
}

// PresenceSetter is the presence component as /sync uses it.
type PresenceSetter interface {
	SetFromSync(ctx context.Context, user id.UserID, state string) error
}

// API is the sync component.
type API struct {
	rooms roomserver.API
	users userapi.API
	nf    *notifier.Notifier
	log   *slog.Logger
	store *syncstore.Store
	db    *storage.DB

	consumeMu sync.Mutex   // one catch-up at a time
	timeline  atomic.Int64 // the cursor: every event up to it is stored
	vis       visibilityCache
	sources   []synctypes.Source
	presence  PresenceSetter
	push      Pusher
	joined    joinedCache

	stop chan struct{}
	done chan struct{}
}

// New opens the sync component's storage.
func New(ctx context.Context, opts Options) (*API, error) {
	store, err := syncstore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("syncapi: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{rooms: opts.Rooms, users: opts.Users, nf: opts.Notifier, log: opts.Logger, store: store, db: opts.DB,
		vis: visibilityCache{m: map[string]string{}}, sources: opts.Sources, presence: opts.Presence, push: opts.Push,
		joined: joinedCache{m: map[id.UserID]map[id.RoomID]string{}}}
	pos, err := store.Cursor(ctx, opts.DB, consumerName)
	if err != nil {
		return nil, err
	}
	a.timeline.Store(pos)
	return a, nil
}

// Start runs the consumer of the roomserver's output stream until Close.
func (a *API) Start() {
	stop, done := make(chan struct{}), make(chan struct{})
	a.stop, a.done = stop, done
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	go func() {
		defer close(done)
		a.nf.Follow(ctx, a.log, roomstore.StreamOutput, roomserver.OutputKey, func(ctx context.Context) (int64, bool, error) {
			pos, err := a.catchUp(ctx)
			return pos, false, err
		})
	}()
}

// Close stops the consumer.
func (a *API) Close() {
	if a.stop != nil {
		close(a.stop)
		<-a.done
		a.stop = nil
	}
}

// Register adds the sync component's client routes.
func (a *API) Register(r *mux.Router) {
	handle := func(path string, h http.Handler, methods ...string) {
		r.Handle("/_matrix/client/{version:(?:r0|v3)}"+path, h).Methods(methods...)
	}
	handle("/sync", a.authed(a.sync, true), http.MethodGet)
	handle("/events", a.authed(a.events, true), http.MethodGet)
	handle("/rooms/{roomId}/messages", a.authed(a.messages, true), http.MethodGet)
	handle("/rooms/{roomId}/context/{eventId}", a.authed(a.context, true), http.MethodGet)
	handle("/rooms/{roomId}/event/{eventId}", a.authed(a.event, true), http.MethodGet)
	handle("/rooms/{roomId}/forget", a.authed(a.forget, false), http.MethodPost)
	r.Handle("/_matrix/client/v1/rooms/{roomId}/relations/{eventId}", a.authed(a.relations, true)).Methods(http.MethodGet)
	r.Handle("/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", a.authed(a.relations, true)).Methods(http.MethodGet)
	r.Handle("/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a.authed(a.relations, true)).Methods(http.MethodGet)
	r.Handle("/_matrix/client/v1/rooms/{roomId}/threads", a.authed(a.threads, true)).Methods(http.MethodGet)
	r.Handle("/_matrix/client/v1/rooms/{roomId}/timestamp_to_event", a.authed(a.timestampToEvent, true)).Methods(http.MethodGet)
}

// authedFunc is a handler for an authenticated device.
type authedFunc func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error

func (a *API) authed(h authedFunc, guests bool) http.Handler {
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, a.users, guests)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// consumerName is the sync timeline's cursor on the output stream.
const consumerName = "timeline"

// outputBatch is how many output events one transaction consumes.
const outputBatch = 200

// catchUp consumes the output stream up to its position at the time of the call, so that a
// reader sees everything answered before it asked, and returns the position reached.
func (a *API) catchUp(ctx context.Context) (int64, error) {
	a.consumeMu.Lock()
	defer a.consumeMu.Unlock()
	target, err := a.rooms.OutputPosition(ctx)
	if err != nil {
		return 0, err
	}
	pos := a.timeline.Load() // the stored cursor: only this function moves either
	for pos < target {
		evs, err := a.rooms.Output(ctx, pos, outputBatch)
		if err != nil {
			return pos, err
		}
		if len(evs) == 0 {
			break
		}
		if err := a.consume(ctx, evs); err != nil {
			return pos, err
		}
		pos = evs[len(evs)-1].Pos
		a.timeline.Store(pos)
		a.wake(evs)
	}
	return pos, nil
}

// wake tells the long-polls of the rooms' members, and of users whose membership changed, that
// the timeline moved; it also drops cached room lists of those users.
func (a *API) wake(evs []roomserver.OutputEvent) {
	keys := map[string]bool{synctypes.TimelineKey: true}
	for _, oe := range evs {
		keys[roomserver.RoomKey(oe.Event.RoomID())] = true
		if sk := oe.Event.StateKey(); oe.Event.Type() == "m.room.member" && sk != nil {
			keys[userapi.UserKey(id.UserID(*sk))] = true
			a.joined.drop(id.UserID(*sk))
		}
	}
	if a.nf == nil {
		return
	}
	list := make([]string, 0, len(keys))
	for k := range keys {
		list = append(list, k)
	}
	a.nf.Notify(synctypes.StreamTimeline, evs[len(evs)-1].Pos, list...)
}
