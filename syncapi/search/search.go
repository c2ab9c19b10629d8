// Package search serves server-side search (POST /search, client-server API "Server Side
// Search") and the user directory (POST /user_directory/search, "User Directory").
//
// Both answer from an index in storage/searchstore that a consumer of the roomserver's output
// stream keeps (design principle 2): it reads events after its cursor, writes what they change
// and the new cursor in one transaction, so after a crash it resumes where the last commit left
// off and nothing is indexed twice. The notifier only wakes it. A search first catches the
// index up to the stream position current when the request came in, so a message sent just
// before is found.
//
// Who sees what: a search matches only events of rooms the searcher has been joined to or
// invited into, and of those only the ones the history visibility rules let them see
// (client-server API, "History visibility"): judged with the visibility the event was sent
// under and the searcher's membership spans taken from the stream. Redacted events drop out of
// the index. Messages in rooms with m.room.encryption are not indexed.
//
// Lock order: Search.mu (one consumer at a time) is held while calling the roomserver and the
// database, never the other way round.
package search

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
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
	"github.com/latticehq/lattice/storage/searchstore"
	"github.com/latticehq/lattice/userapi"
)

// cursorName names this consumer's cursor in the search store.
const cursorName = "search"

// batchSize is how many output events one transaction indexes while catching up. Each
// transaction costs a stream read and an FTS segment flush, so a backlog goes three times
// faster than with batches of 100, while on SQLite the writer is held for some 10 ms a batch.
const batchSize = 500

// Rooms is what search needs of the roomserver.
type Rooms interface {
	Output(ctx context.Context, from int64, limit int) ([]roomserver.OutputEvent, error)
	OutputPosition(ctx context.Context) (int64, error)
	Event(ctx context.Context, eventID id.EventID) (*pdu.Event, error)
	CurrentState(ctx context.Context, roomID id.RoomID) (map[auth.StateKey]*pdu.Event, error)
	StateAtPosition(ctx context.Context, roomID id.RoomID, pos int64) (map[auth.StateKey]*pdu.Event, error)
	PublishedRooms(ctx context.Context) ([]id.RoomID, error)
}

var _ Rooms = roomserver.API(nil)

// Options configures search.
type Options struct {
	DB         *storage.DB
	Rooms      Rooms
	Users      userapi.API
	Notifier   *notifier.Notifier // wakes the consumer; nil: only requests move the index
	ServerName string
	// SearchAllUsers makes every local user findable in the user directory, not only those
	// who share a room with the searcher or are in a public room.
	SearchAllUsers bool
	Logger         *slog.Logger
}

// Search is the search component.
type Search struct {
	opts  Options
	store *searchstore.Store
	log   *slog.Logger

	mu     sync.Mutex   // held by whoever consumes: the background goroutine or a catching-up request
	cursor atomic.Int64 // the committed cursor, readable without mu

	startOnce sync.Once
	stop      context.CancelFunc
	done      chan struct{}
}

// New opens the search store and reads the consumer's cursor; nothing runs until Start.
func New(ctx context.Context, opts Options) (*Search, error) {
	store, err := searchstore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	pos, err := store.Cursor(ctx, opts.DB, cursorName)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Search{opts: opts, store: store, log: opts.Logger.With("component", "search")}
	s.cursor.Store(pos)
	return s, nil
}

// Register adds the search routes to r.
func (s *Search) Register(r *mux.Router) {
	// Neither endpoint is open to guests (client-server API, "Guest access").
	r.Handle("/_matrix/client/{version:(?:r0|v3)}/search", s.authed(s.search)).Methods(http.MethodPost)
	r.Handle("/_matrix/client/{version:(?:r0|v3)}/user_directory/search", s.authed(s.searchUsers)).Methods(http.MethodPost)
}

func (s *Search) authed(h func(http.ResponseWriter, *http.Request, *userapi.Device) error) http.Handler {
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, s.opts.Users, false)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// Start runs the consumer in the background until Close.
func (s *Search) Start() {
	s.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.stop, s.done = cancel, make(chan struct{})
		go func() {
			defer close(s.done)
			s.run(ctx)
		}()
	})
}

// Close stops the consumer and waits for it; what it committed stays, the rest is read again
// on the next start.
func (s *Search) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	return nil
}

// run consumes the stream, sleeping on the notifier when it has caught up.
func (s *Search) run(ctx context.Context) {
	s.opts.Notifier.Follow(ctx, s.log, roomstore.StreamOutput, roomserver.OutputKey, func(ctx context.Context) (int64, bool, error) {
		n, err := s.consume(ctx)
		return s.cursor.Load(), n > 0, err
	})
}

// consume indexes the next batch of the output stream and reports how many events it took.
func (s *Search) consume(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.cursor.Load()
	evs, err := s.opts.Rooms.Output(ctx, from, batchSize)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	if err := s.index(ctx, evs); err != nil {
		return 0, err
	}
	s.cursor.Store(evs[len(evs)-1].Pos)
	return len(evs), nil
}

// maxRequestCatchUp bounds the backlog a request indexes itself before answering. Beyond it
// (a first start on a large server) the request answers from the index as it stands rather than
// wait minutes; the background consumer works through the backlog meanwhile.
const maxRequestCatchUp = 10 * batchSize

// catchUp indexes the stream up to the position it had when called, so a search sees every
// event committed before the request.
func (s *Search) catchUp(ctx context.Context) error {
	target, err := s.opts.Rooms.OutputPosition(ctx)
	if err != nil {
		return err
	}
	if behind := target - s.cursor.Load(); behind > maxRequestCatchUp {
		s.log.WarnContext(ctx, "search index is behind; answering from it as it stands", "behind", behind)
		return nil
	}
	return s.indexUpTo(ctx, target)
}

// indexUpTo consumes the stream until the cursor reaches target or the stream ends.
func (s *Search) indexUpTo(ctx context.Context, target int64) error {
	for s.cursor.Load() < target {
		n, err := s.consume(ctx)
		if err != nil {
			return fmt.Errorf("search: catch up to %d: %w", target, err)
		}
		if n == 0 {
			return nil // the rest of the positions hold no output events
		}
	}
	return nil
}
