// Package ephemeral serves what users say about a room outside its event graph: typing
// notifications, read receipts and the fully read marker (client-server API, "Typing
// Notifications", "Receipts", "Read and unread markers"), and the typing and receipts streams
// through which /sync delivers the first two as ephemeral events.
//
// Typing lives in memory only: it expires within two minutes anyway, and a restart forgets it
// (Typing explains how tokens stay valid across one). Receipts are stored in
// storage/receiptstore with positions of their own stream, written before the request is
// answered, so a receipt acknowledged with 200 survives a crash.
//
// Lock order: Receipts.wmu before Receipts.mu; Typing.mu and Receipts.mu before the notifier's
// mutex (Notify is called while holding them, so positions are announced in order). No lock of
// this package is held while calling the roomserver, the user component or the database, except
// Receipts.wmu, which serialises receipt writes around their transaction.
package ephemeral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/eventfilter"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/internal/ratelimit"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// Options configures the ephemeral component.
type Options struct {
	DB       *storage.DB
	Rooms    roomserver.API
	Users    userapi.API
	Notifier *notifier.Notifier
	Logger   *slog.Logger
	// Limiter, if set, bounds each user's typing and receipt updates.
	Limiter *ratelimit.Limiter
	// OnReceipts, if set, runs in the transaction that stores receipts, with those written
	// (the push component marks notifications read).
	OnReceipts func(ctx context.Context, tx *storage.Tx, written []receiptstore.Receipt) error
}

// API is the ephemeral component: its HTTP routes and its two /sync sources.
type API struct {
	rooms    roomserver.API
	users    userapi.API
	log      *slog.Logger
	limiter  *ratelimit.Limiter
	typing   *Typing
	receipts *Receipts
	now      func() time.Time
}

// New opens the receipts store and starts with no one typing.
func New(ctx context.Context, opts Options) (*API, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	receipts, err := newReceipts(ctx, opts.DB, opts.Notifier, opts.Logger)
	if receipts != nil {
		receipts.onWrite = opts.OnReceipts
	}
	if err != nil {
		return nil, fmt.Errorf("ephemeral: %w", err)
	}
	return &API{rooms: opts.Rooms, users: opts.Users, log: opts.Logger, limiter: opts.Limiter,
		typing: newTyping(opts.Notifier, time.Now), receipts: receipts, now: time.Now}, nil
}

// Typing is the typing stream.
func (a *API) Typing() *Typing { return a.typing }

// Receipts is the receipts stream.
func (a *API) Receipts() *Receipts { return a.receipts }

// Sources are the component's /sync streams.
func (a *API) Sources() []synctypes.Source { return []synctypes.Source{a.receipts, a.typing} }

// Close stops the typing timers; typing updates after it are ignored.
func (a *API) Close() { a.typing.close() }

// Register adds the component's client routes.
func (a *API) Register(r *mux.Router) {
	handle := func(path string, h authedFunc, method string) {
		r.Handle("/_matrix/client/{version:(?:r0|v3)}"+path, a.authed(h)).Methods(method)
	}
	handle("/rooms/{roomId}/typing/{userId}", a.putTyping, http.MethodPut)
	handle("/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.postReceipt, http.MethodPost)
	handle("/rooms/{roomId}/read_markers", a.postReadMarkers, http.MethodPost)
}

type authedFunc func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error

// authed authenticates the request; guests are refused, as these endpoints are not among those
// the spec opens to them ("Guest Access").
func (a *API) authed(h authedFunc) http.Handler {
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, a.users, false)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// allow takes a token of the user's rate limit.
func (a *API) allow(user id.UserID) error {
	if ok, wait := a.limiter.Allow(string(user)); !ok {
		return httpapi.LimitExceeded(wait, "Too many typing or receipt updates")
	}
	return nil
}

// roomIDVar returns the {roomId} of the path, M_INVALID_PARAM if it is not a room ID.
func roomIDVar(r *http.Request) (id.RoomID, error) {
	s := httpapi.Vars(r)["roomId"]
	if !strings.HasPrefix(s, "!") || len(s) > 255 {
		return "", httpapi.InvalidParam("%q is not a room ID", s)
	}
	return id.RoomID(s), nil
}

// checkEventID refuses what cannot be an event ID.
func checkEventID(s string) error {
	if !strings.HasPrefix(s, "$") || len(s) > 255 {
		return httpapi.InvalidParam("%q is not an event ID", s)
	}
	return nil
}

// requireJoined answers 403 unless the user is joined to the room now; an unknown room gets the
// same answer, so that outsiders learn nothing about which rooms exist.
func (a *API) requireJoined(ctx context.Context, roomID id.RoomID, user id.UserID) error {
	ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.member", string(user))
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return httpapi.Forbidden("You are not joined to this room")
	} else if err != nil {
		return fmt.Errorf("membership of %s in %s: %w", user, roomID, err)
	}
	if ev == nil {
		return httpapi.Forbidden("You are not joined to this room")
	}
	var c struct {
		Membership string `json:"membership"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil || c.Membership != "join" {
		return httpapi.Forbidden("You are not joined to this room")
	}
	return nil
}

// ephemeralWanted applies the sync filter's room filter and its ephemeral filter to an
// ephemeral event of typ in room (client-server API, "Filtering"). An absent list allows all;
// a present, empty one allows none. The senders lists do not apply: these events have no
// sender.
func ephemeralWanted(f *synctypes.Filter, room id.RoomID, typ string) bool {
	if f == nil || f.Room == nil {
		return true
	}
	rf := f.Room
	if (rf.Rooms != nil && !slices.Contains(rf.Rooms, string(room))) || slices.Contains(rf.NotRooms, string(room)) {
		return false
	}
	ef := rf.Ephemeral
	if ef == nil {
		return true
	}
	if (ef.Rooms != nil && !slices.Contains(ef.Rooms, string(room))) || slices.Contains(ef.NotRooms, string(room)) {
		return false
	}
	if ef.Types != nil && !eventfilter.AnyTypeMatches(ef.Types, typ) {
		return false
	}
	return !eventfilter.AnyTypeMatches(ef.NotTypes, typ)
}
