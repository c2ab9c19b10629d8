// Package push carries out push notifications on the sync side (client-server API, "Push
// Notifications"): it evaluates every new event against the push rules of the room's local
// members inside the sync consumer's transaction (so a notification count always arrives in
// the same /sync response as its event), keeps the counts and marks them read on receipts,
// serves GET /notifications, and delivers notifications to push gateways from each pusher's
// durable cursor (push gateway API, POST /_matrix/push/v1/notify).
package push

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/pushstore"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/userapi"
)

// Options configures the push component.
type Options struct {
	DB         *storage.DB
	Rooms      roomserver.API
	Users      userapi.API
	Notifier   *notifier.Notifier
	Logger     *slog.Logger
	ServerName string
	Config     config.Push
	// RootCAs are the authorities trusted for HTTPS gateways; nil means the system's.
	RootCAs *x509.CertPool
}

// Push is the push component.
type Push struct {
	db     *storage.DB
	rooms  roomserver.API
	users  userapi.API
	nf     *notifier.Notifier
	log    *slog.Logger
	server string
	cfg    config.Push
	store  *pushstore.Store
	events *syncstore.Store

	// mu guards the room cache, which only the sync consumer (one at a time) changes.
	mu         sync.Mutex
	roomsCache map[id.RoomID]*roomMembers
	cachedSize int

	sender *sender

	badgeMu sync.Mutex
	badges  map[id.UserID]bool // users due a badge update (counts.go)
}

// New opens the push tables.
func New(ctx context.Context, opts Options) (*Push, error) {
	store, err := pushstore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	events, err := syncstore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Push{db: opts.DB, rooms: opts.Rooms, users: opts.Users, nf: opts.Notifier, log: opts.Logger,
		server: opts.ServerName, cfg: opts.Config, store: store, events: events, roomsCache: map[id.RoomID]*roomMembers{}}
	p.sender = newSender(p, opts.RootCAs)
	return p, nil
}

// Start runs the delivery to push gateways until Close.
func (p *Push) Start() { p.sender.start() }

// Close stops the delivery, letting requests in flight finish or time out.
func (p *Push) Close() { p.sender.stop() }

// Register adds GET /notifications.
func (p *Push) Register(r *mux.Router) {
	r.Handle("/_matrix/client/{version:(?:r0|v3)}/notifications", httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, p.users, false)
		if err != nil {
			return err
		}
		return p.notifications(w, r, dev)
	})).Methods(http.MethodGet)
}

// local reports whether user belongs to this server.
func (p *Push) local(user id.UserID) bool { return user.Homeserver() == p.server }
