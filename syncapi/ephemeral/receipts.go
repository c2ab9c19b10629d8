package ephemeral

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// receiptLogMax bounds the memory of recent receipt changes; a token older than what is
// remembered is answered from the database for every joined room.
const receiptLogMax = 1 << 16

// Receipts is the receipts stream of /sync over storage/receiptstore (client-server API,
// "Receipts"). Its positions are those of the stream's rows; it remembers which rooms recent
// positions touched, so that an incremental sync asks the database only about the changed rooms
// among the user's.
type Receipts struct {
	store *receiptstore.Store
	db    *storage.DB
	nf    *notifier.Notifier
	log   *slog.Logger
	pos   atomic.Int64 // every position up to it is committed and in changes
	// onWrite runs in the transaction of each write (Options.OnReceipts); nil for none.
	onWrite func(ctx context.Context, tx *storage.Tx, written []receiptstore.Receipt) error

	// wmu serialises writes, so that positions reach changes and pos in commit order. Writers
	// of the stream are serialised by its counter row from their position on anyway.
	wmu     sync.Mutex
	mu      sync.Mutex // guards changes
	changes *changeLog
}

var _ synctypes.Source = (*Receipts)(nil)

func newReceipts(ctx context.Context, db *storage.DB, nf *notifier.Notifier, log *slog.Logger) (*Receipts, error) {
	store, err := receiptstore.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	pos, err := db.StreamPosition(ctx, receiptstore.Stream)
	if err != nil {
		return nil, err
	}
	r := &Receipts{store: store, db: db, nf: nf, log: log, changes: newChangeLog(pos, receiptLogMax)}
	r.pos.Store(pos)
	return r, nil
}

// Put stores receipts, each replacing its owner's receipt of the same type and thread in the
// room unless that one is already at the same or a later event, and wakes those who must see
// them: the room's members for a public receipt, the owner alone for a private one. Callers
// have checked the receipts.
func (r *Receipts) Put(ctx context.Context, rs []receiptstore.Receipt) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	var hooks []func(context.Context, *storage.Tx, []receiptstore.Receipt) error
	if r.onWrite != nil {
		hooks = append(hooks, r.onWrite)
	}
	pos, written, err := r.store.Put(ctx, rs, hooks...)
	if err != nil {
		r.resync()
		return err
	}
	if pos == 0 {
		return nil
	}
	keys := make([]string, 0, len(written)+1)
	keys = append(keys, synctypes.ReceiptsKey)
	r.mu.Lock()
	for _, w := range written {
		c := change{pos: pos, room: id.RoomID(w.RoomID)}
		key := roomserver.RoomKey(c.room)
		if w.Type == receiptstore.PrivateType {
			c.only = id.UserID(w.UserID)
			key = userapi.UserKey(c.only)
		}
		r.changes.add(c)
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	r.pos.Store(pos)
	if r.nf != nil {
		r.nf.Notify(synctypes.StreamReceipts, pos, keys...)
	}
	r.mu.Unlock()
	return nil
}

// resync follows a failed write whose commit may have happened after all: it takes the
// stream's position from the database and, if the write reached it, forgets the rooms of
// every position so far, so that syncs spanning it read the database for all their rooms.
// r.wmu is held.
func (r *Receipts) resync() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pos, err := r.db.StreamPosition(ctx, receiptstore.Stream)
	if err != nil {
		r.log.Error("read receipts stream position", "error", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if pos > r.pos.Load() {
		r.changes.forget(len(r.changes.entries))
		r.changes.floor = pos
		r.pos.Store(pos)
	}
}

// Stream is synctypes.StreamReceipts.
func (r *Receipts) Stream() string { return synctypes.StreamReceipts }

// Position is the latest receipts position.
func (r *Receipts) Position(context.Context) (int64, error) { return r.pos.Load(), nil }

// receiptUser is one user's receipt under an event in an m.receipt event.
type receiptUser struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// receiptEvent is a room's m.receipt event: event ID → receipt type → user → receipt.
type receiptEvent struct {
	Type    string                                       `json:"type"`
	Content map[string]map[string]map[string]receiptUser `json:"content"`
}

// Collect gives each joined room with receipts changed in (from, to] an m.receipt event of
// those receipts per thread; an initial sync gets every receipt of the joined rooms up to to. Private
// receipts reach their owner alone. One query serves all rooms.
func (r *Receipts) Collect(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) error {
	if req.Initial {
		from = 0
	}
	// Rooms joined since the token get all their receipts, as on an initial sync.
	var newly []string
	for _, room := range req.NewlyJoined {
		if !req.Initial && ephemeralWanted(req.Filter, room, "m.receipt") {
			newly = append(newly, string(room))
		}
	}
	var rs []receiptstore.Receipt
	if len(newly) > 0 {
		var err error
		if rs, err = r.store.Changed(ctx, newly, 0, to, string(req.User)); err != nil {
			return err
		}
	}
	if from < to {
		// Without a remembered window (an initial sync, or a token older than the log) every
		// joined room is asked about; else only those the log says changed.
		r.mu.Lock()
		window := !req.Initial && r.changes.covers(from)
		var rooms []string
		if !window || r.changes.any(from, to) {
			for _, room := range req.Joined {
				if (!window || r.changes.changedAfter(room, req.User, from)) && ephemeralWanted(req.Filter, room, "m.receipt") &&
					!slices.Contains(newly, string(room)) {
					rooms = append(rooms, string(room))
				}
			}
		}
		r.mu.Unlock()
		if len(rooms) > 0 {
			more, err := r.store.Changed(ctx, rooms, from, to, string(req.User))
			if err != nil {
				return err
			}
			rs = append(rs, more...)
		}
	}
	// One event per room and thread, as the spec's server behaviour asks: within it each user
	// has at most one receipt of a type per event, which is what its shape can say.
	type key struct{ room, thread string }
	events := map[key]*receiptEvent{}
	var order []key
	for _, rc := range rs {
		k := key{rc.RoomID, rc.ThreadID}
		ev := events[k]
		if ev == nil {
			ev = &receiptEvent{Type: "m.receipt", Content: map[string]map[string]map[string]receiptUser{}}
			events[k] = ev
			order = append(order, k)
		}
		byType := ev.Content[rc.EventID]
		if byType == nil {
			byType = map[string]map[string]receiptUser{}
			ev.Content[rc.EventID] = byType
		}
		if byType[rc.Type] == nil {
			byType[rc.Type] = map[string]receiptUser{}
		}
		byType[rc.Type][rc.UserID] = receiptUser{TS: rc.TS, ThreadID: rc.ThreadID}
	}
	for _, k := range order {
		raw, err := json.Marshal(events[k])
		if err != nil {
			return err
		}
		resp.JoinedRoom(id.RoomID(k.room)).Ephemeral.Add(json.RawMessage(raw))
	}
	return nil
}
