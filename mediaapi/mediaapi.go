// Package mediaapi is the media repository (client-server API, "Content repository"): uploads,
// asynchronous uploads (spec v1.7), downloads and thumbnails on the authenticated
// /_matrix/client/v1/media endpoints (spec v1.11) and the deprecated /_matrix/media/v3 ones,
// URL previews, and Synapse-compatible admin endpoints to quarantine and delete media.
//
// Bytes live on local disk in files named by their SHA-256 (files.go), metadata in the
// database (storage/mediastore). An upload is streamed to a temporary file while it is hashed,
// synced, renamed into place and only then recorded, so a 200 answer means both the file and
// its row survive a crash, and the same bytes uploaded twice are stored once.
//
// Lock order: a hash lock of files (one at a time) is held while calling the database, never
// the other way round; the waiters' and flights' mutexes are leaves held for map updates only.
package mediaapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/safehttp"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/userapi"
)

// RemoteFetcher downloads media of other servers (server-server API, "Content repository").
// Federation does not exist yet; without a fetcher, remote media is unknown (404).
type RemoteFetcher interface {
	// FetchMedia starts the download of a remote server's media item; the caller closes Body.
	FetchMedia(ctx context.Context, serverName, mediaID string) (*RemoteMedia, error)
}

// RemoteMedia is a remote media item being downloaded.
type RemoteMedia struct {
	Body        io.ReadCloser
	ContentType string
	Filename    string
}

// Options configures the media repository.
type Options struct {
	DB         *storage.DB
	Users      userapi.API
	ServerName string
	// Path is the folder of the media files, already resolved against the config's folder.
	Path   string
	Config config.Media
	// Remote fetches remote media; nil answers remote media with 404 M_NOT_FOUND.
	Remote RemoteFetcher
	// RootCAs are the authorities trusted for HTTPS previews; nil means the system's.
	RootCAs *x509.CertPool
	Logger  *slog.Logger
}

// Media is the media repository component.
type Media struct {
	opts    Options
	cfg     config.Media
	store   *mediastore.Store
	files   *files
	log     *slog.Logger
	waiters waiters
	flights flights
	// thumbSlots bounds how many images are decoded at once: each may take
	// max_image_pixels × 4 bytes.
	thumbSlots chan struct{}
	preview    *http.Client

	startOnce sync.Once
	stop      context.CancelFunc
	done      chan struct{}
}

// New opens the media store and folder; nothing runs in the background until Start.
func New(ctx context.Context, opts Options) (*Media, error) {
	store, err := mediastore.Open(ctx, opts.DB)
	if err != nil {
		return nil, fmt.Errorf("mediaapi: %w", err)
	}
	fs, err := openFiles(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("mediaapi: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	up := opts.Config.URLPreview
	return &Media{
		opts:       opts,
		cfg:        opts.Config,
		store:      store,
		files:      fs,
		log:        opts.Logger.With("component", "mediaapi"),
		thumbSlots: make(chan struct{}, 2),
		preview: safehttp.NewClient(safehttp.Options{
			AllowPrivate: up.AllowPrivateAddresses,
			Timeout:      up.Timeout,
			RootCAs:      opts.RootCAs,
		}),
	}, nil
}

// Register adds the media routes to r: the authenticated /_matrix/client/v1/media endpoints,
// the /_matrix/media ones and the admin endpoints.
func (m *Media) Register(r *mux.Router) {
	const (
		get  = http.MethodGet
		head = http.MethodHead
		post = http.MethodPost
		put  = http.MethodPut
		del  = http.MethodDelete
	)
	legacy := "/_matrix/media/{version:(?:r0|v3)}"
	authed := "/_matrix/client/v1/media"

	r.Handle(legacy+"/upload", m.authed(m.upload, false)).Methods(post)
	r.Handle("/_matrix/media/v1/create", m.authed(m.create, false)).Methods(post)
	r.Handle(legacy+"/upload/{serverName}/{mediaId}", m.authed(m.uploadTo, false)).Methods(put)

	r.Handle(authed+"/config", m.authed(m.config, true)).Methods(get)
	r.Handle(legacy+"/config", m.authed(m.config, true)).Methods(get)

	// Guests may download and thumbnail (client-server API, "Guest access", v1.12).
	r.Handle(authed+"/download/{serverName}/{mediaId}", m.authed(m.downloadAuthed, true)).Methods(get, head)
	r.Handle(authed+"/download/{serverName}/{mediaId}/{fileName}", m.authed(m.downloadAuthed, true)).Methods(get, head)
	r.Handle(authed+"/thumbnail/{serverName}/{mediaId}", m.authed(m.thumbnailAuthed, true)).Methods(get, head)
	r.Handle(legacy+"/download/{serverName}/{mediaId}", httpapi.HandlerFunc(m.downloadLegacy)).Methods(get, head)
	r.Handle(legacy+"/download/{serverName}/{mediaId}/{fileName}", httpapi.HandlerFunc(m.downloadLegacy)).Methods(get, head)
	r.Handle(legacy+"/thumbnail/{serverName}/{mediaId}", httpapi.HandlerFunc(m.thumbnailLegacy)).Methods(get, head)

	r.Handle(authed+"/preview_url", m.authed(m.previewURL, false)).Methods(get)
	r.Handle(legacy+"/preview_url", m.authed(m.previewURL, false)).Methods(get)

	m.registerAdmin(r)
}

// authedFunc is a handler for a request whose access token was checked.
type authedFunc func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error

func (m *Media) authed(h authedFunc, allowGuests bool) http.Handler {
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, m.opts.Users, allowGuests)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// config answers GET /media/config.
func (m *Media) config(w http.ResponseWriter, _ *http.Request, _ *userapi.Device) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]int64{"m.upload.size": m.cfg.MaxUploadSize})
	return nil
}

// janitorEvery is how often expired media IDs and old previews are dropped.
const janitorEvery = 10 * time.Minute

// previewKeep is how long cached previews are kept.
const previewKeep = 7 * 24 * time.Hour

// Start runs the janitor in the background until Close.
func (m *Media) Start() {
	m.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		m.stop, m.done = cancel, make(chan struct{})
		go func() {
			defer close(m.done)
			t := time.NewTicker(janitorEvery)
			defer t.Stop()
			for {
				m.sweep(ctx)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	})
}

// sweep drops created media IDs that expired without an upload, and old cached previews.
func (m *Media) sweep(ctx context.Context) {
	now := time.Now()
	if n, err := m.store.DeleteExpiredPending(ctx, now.UnixMilli()); err != nil && ctx.Err() == nil {
		m.log.Warn("drop expired media IDs", "error", err)
	} else if n > 0 {
		m.log.Info("dropped expired media IDs", "count", n)
	}
	if _, err := m.store.DeletePreviewsBefore(ctx, now.Add(-previewKeep).UnixMilli()); err != nil && ctx.Err() == nil {
		m.log.Warn("drop old URL previews", "error", err)
	}
}

// Close stops the janitor and waits for it.
func (m *Media) Close() error {
	if m.stop != nil {
		m.stop()
		<-m.done
	}
	m.preview.CloseIdleConnections()
	return nil
}

// local reports whether a media item is this server's own.
func (m *Media) local(ref mediaRef) bool { return ref.server == m.opts.ServerName }

// commit places staged content under its hash's lock and runs record (which inserts the row
// naming it) while still holding the lock. If record fails, the file goes again unless
// another row names it.
func (m *Media) commit(ctx context.Context, st *staged, record func() error) error {
	lock := m.files.hashLock(st.hash)
	lock.Lock()
	defer lock.Unlock()
	if err := m.files.place(st); err != nil {
		return err
	}
	if err := record(); err != nil {
		// The request's context may be the reason record failed; the clean-up must still run.
		m.dropUnreferenced(context.WithoutCancel(ctx), st.hash)
		return err
	}
	return nil
}

// release removes the files of hashes no row names any more (after rows were deleted).
func (m *Media) release(ctx context.Context, hashes []string) {
	for _, h := range hashes {
		lock := m.files.hashLock(h)
		lock.Lock()
		m.dropUnreferenced(ctx, h)
		lock.Unlock()
	}
}

// dropUnreferenced removes a hash's file if no row names it; the caller holds its lock.
func (m *Media) dropUnreferenced(ctx context.Context, hash string) {
	n, err := m.store.HashRefs(ctx, hash)
	if err != nil {
		m.log.Warn("count media file references", "hash", hash, "error", err)
		return // keep the file: a stray file is harmless, a missing one is not
	}
	if n == 0 {
		if err := m.files.remove(hash); err != nil {
			m.log.Warn("remove media file", "hash", hash, "error", err)
		}
	}
}

// storeErr turns a failure of stage into the answer for the client.
func storeErr(err error, limit int64) error {
	var maxErr *http.MaxBytesError
	var rerr *readError
	switch {
	case errors.Is(err, errTooLarge), errors.As(err, &maxErr):
		return httpapi.TooLarge("Cannot upload files larger than %d bytes", limit)
	case errors.As(err, &rerr):
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Could not read the uploaded content")
	}
	return err
}
