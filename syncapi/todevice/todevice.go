// Package todevice carries send-to-device messages (client-server API, "Send-to-Device
// messaging") and device-list changes (end-to-end encryption module, "Tracking the device list
// for a user") to /sync, as two of its streams (synctypes.StreamToDevice and
// synctypes.StreamDeviceLists).
//
// Design principle 2 throughout: a message is stored per recipient device, at a to_device
// position, in the transaction of the PUT that answers 200, and deleted only when that device
// presents a since token past it. The device_lists stream has two writers drawing from one
// counter: userapi, which records every device created, renamed or deleted (and, later, new keys)
// in the device's own transaction, and this package's consumer of the roomserver's output stream,
// which records when users start or stop being joined to rooms and when rooms become encrypted.
// A second consumer follows userapi's changes to wake the co-members of changed users and to
// delete the messages of deleted devices. Both consumers keep their cursors in todevicestore,
// moved in the transaction of what they did, so a crash loses nothing.
package todevice

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
	"github.com/latticehq/lattice/storage/todevicestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// Options configures the component.
type Options struct {
	DB       *storage.DB
	Rooms    roomserver.API
	Users    userapi.API
	Notifier *notifier.Notifier // nil: nothing wakes, the consumers run only when started
	Logger   *slog.Logger
	// ServerName tells local recipients, whose messages are stored, from remote ones.
	ServerName string
	// TxnLifetime is how long a transaction ID is remembered for idempotency (0: a day).
	TxnLifetime time.Duration
}

// API is the to-device component.
type API struct {
	opts  Options
	store *todevicestore.Store
	log   *slog.Logger
	now   func() time.Time

	inbox *Inbox
	lists *DeviceLists

	devMu     sync.Mutex // one run of consumeDevices at a time
	devCursor int64      // how far consumeDevices got; stored with the batches that had changes
	devLoaded bool

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New opens the component's storage and reads the streams' positions; nothing runs until Start.
func New(ctx context.Context, opts Options) (*API, error) {
	if opts.ServerName == "" {
		return nil, fmt.Errorf("todevice: no server name")
	}
	store, err := todevicestore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("todevice: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TxnLifetime <= 0 {
		opts.TxnLifetime = 24 * time.Hour
	}
	a := &API{opts: opts, store: store, log: opts.Logger.With("component", "todevice"), now: time.Now}
	a.inbox = &Inbox{a: a}
	a.lists = &DeviceLists{a: a, rooms: newRoomCache()}
	for _, s := range []struct {
		name string
		pos  *atomic.Int64
	}{{synctypes.StreamToDevice, &a.inbox.pos}, {synctypes.StreamDeviceLists, &a.lists.pos}} {
		p, err := opts.DB.StreamPosition(ctx, s.name)
		if err != nil {
			return nil, fmt.Errorf("todevice: %w", err)
		}
		s.pos.Store(p)
	}
	return a, nil
}

// Sources are the component's streams, for the sync core.
func (a *API) Sources() []synctypes.Source { return []synctypes.Source{a.inbox, a.lists} }

// Inbox is the to-device stream.
func (a *API) Inbox() *Inbox { return a.inbox }

// DeviceLists is the device-list stream; its Changes answers GET /keys/changes.
func (a *API) DeviceLists() *DeviceLists { return a.lists }

// Register adds the component's client routes.
func (a *API) Register(r *mux.Router) {
	// Guests may send to devices (client-server API, "Guest access").
	r.Handle("/_matrix/client/{version:(?:r0|v3)}/sendToDevice/{eventType}/{txnId}", a.authed(a.sendToDevice, true)).Methods(http.MethodPut)
}

type authedFunc func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error

func (a *API) authed(h authedFunc, guests bool) http.Handler {
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, a.opts.Users, guests)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// Start runs the two consumers and the pruning of old transaction IDs until Close.
func (a *API) Start() {
	if a.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	a.wg.Go(func() {
		a.opts.Notifier.Follow(ctx, a.log, roomstore.StreamOutput, roomserver.OutputKey, a.consumeRooms)
	})
	a.wg.Go(func() {
		a.opts.Notifier.Follow(ctx, a.log, synctypes.StreamDeviceLists, userapi.DeviceListsKey, a.consumeDevices)
	})
	a.wg.Go(func() { a.pruneLoop(ctx) })
}

// Close stops the background work and waits for it; what it committed stays.
func (a *API) Close() {
	if a.stop != nil {
		a.stop()
		a.wg.Wait()
		a.stop = nil
	}
}

// pruneLoop forgets transaction IDs older than TxnLifetime, hourly: a client retries a send
// within minutes, and the IDs would otherwise pile up for every send ever made.
func (a *API) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		before := a.now().Add(-a.opts.TxnLifetime).UnixMilli()
		if n, err := a.store.PruneTxns(ctx, before); err != nil && ctx.Err() == nil {
			a.log.Error("prune to-device transaction IDs", "error", err)
		} else if n > 0 {
			a.log.Debug("pruned to-device transaction IDs", "count", n)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// advance raises p to pos; positions only move forward, whoever stores last.
func advance(p *atomic.Int64, pos int64) {
	for {
		cur := p.Load()
		if pos <= cur || p.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// notify wakes the waiters of stream at pos for keys.
func (a *API) notify(stream string, pos int64, keys []string) {
	if a.opts.Notifier != nil && len(keys) > 0 {
		a.opts.Notifier.Notify(stream, pos, keys...)
	}
}
