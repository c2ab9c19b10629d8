package mediaapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/userapi"
)

// Waiting for an asynchronous upload (spec v1.7, timeout_ms): 20 s unless the client says
// otherwise, at most a minute. Another process may complete the upload, so the row is read
// again every pollEvery as well as when this process wakes the wait.
const (
	defaultWait = 20 * time.Second
	maxWait     = time.Minute
	pollEvery   = 2 * time.Second
)

// fetchOptions are the query parameters shared by download and thumbnail requests.
type fetchOptions struct {
	wait        time.Duration
	allowRemote bool
	legacy      bool // a deprecated unauthenticated endpoint
}

func parseFetchOptions(r *http.Request, legacy bool) (fetchOptions, error) {
	q := r.URL.Query()
	o := fetchOptions{wait: defaultWait, allowRemote: true, legacy: legacy}
	if v := q.Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return o, httpapi.InvalidParam("timeout_ms must be a non-negative integer")
		}
		o.wait = time.Duration(min(ms, maxWait.Milliseconds())) * time.Millisecond
	}
	var err error
	if o.allowRemote, err = boolParam(q.Get("allow_remote"), true, "allow_remote"); err != nil {
		return o, err
	}
	// allow_redirect only permits a redirect; content is always served here, so it is
	// checked and otherwise ignored.
	if _, err := boolParam(q.Get("allow_redirect"), false, "allow_redirect"); err != nil {
		return o, err
	}
	return o, nil
}

// boolParam parses a boolean query parameter, def when absent.
func boolParam(v string, def bool, name string) (bool, error) {
	switch v {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, httpapi.InvalidParam("%s must be true or false", name)
}

// resolve finds the media item a download or thumbnail request names, waiting for a pending
// upload up to o.wait: 404 M_NOT_FOUND for unknown, expired, quarantined and (on the
// deprecated endpoints) frozen media, 504 M_NOT_YET_UPLOADED when the wait runs out.
func (m *Media) resolve(ctx context.Context, ref mediaRef, o fetchOptions) (*mediastore.Media, error) {
	item, err := m.store.Get(ctx, ref.server, ref.id)
	if errors.Is(err, mediastore.ErrNotFound) {
		if m.local(ref) || !o.allowRemote {
			return nil, notFound()
		}
		item, err = m.fetchRemote(ctx, ref)
	}
	if err != nil {
		return nil, err
	}
	if item.Pending() {
		if item, err = m.waitUpload(ctx, ref, item, o.wait); err != nil {
			return nil, err
		}
	}
	if item.Quarantined || (o.legacy && !item.LegacyAccess) {
		return nil, notFound()
	}
	return item, nil
}

func notFound() error { return httpapi.NotFound("Unknown media") }

// waitUpload waits until a pending item has its content, it expires, or wait passes.
func (m *Media) waitUpload(ctx context.Context, ref mediaRef, item *mediastore.Media, wait time.Duration) (*mediastore.Media, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		if time.Now().UnixMilli() >= item.ExpiresTS {
			return nil, notFound()
		}
		woken, done := m.waiters.wait(ref)
		// Read again after registering, so an upload that completed in between is seen.
		next, err := m.store.Get(ctx, ref.server, ref.id)
		if err != nil {
			done()
			if errors.Is(err, mediastore.ErrNotFound) {
				return nil, notFound()
			}
			return nil, err
		}
		if !next.Pending() {
			done()
			return next, nil
		}
		item = next
		poll := time.NewTimer(pollEvery)
		select {
		case <-woken:
		case <-poll.C:
		case <-deadline.C:
			poll.Stop()
			done()
			return nil, httpapi.NewError(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
		case <-ctx.Done():
			poll.Stop()
			done()
			return nil, ctx.Err()
		}
		poll.Stop()
		done()
	}
}

// downloadAuthed answers GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}].
func (m *Media) downloadAuthed(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	return m.download(w, r, false)
}

// downloadLegacy answers GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}].
func (m *Media) downloadLegacy(w http.ResponseWriter, r *http.Request) error {
	return m.download(w, r, true)
}

func (m *Media) download(w http.ResponseWriter, r *http.Request, legacy bool) error {
	ref, err := refOf(r)
	if err != nil {
		return err
	}
	o, err := parseFetchOptions(r, legacy)
	if err != nil {
		return err
	}
	item, err := m.resolve(r.Context(), ref, o)
	if err != nil {
		return err
	}
	filename := item.Filename
	if name, ok := httpapi.Vars(r)["fileName"]; ok {
		filename = name
	}
	return m.serveFile(w, r, item.SHA256, item.ContentType, contentDisposition(item.ContentType, filename), item.UploadedTS)
}

// serveFile sends the file of a hash with the media headers; http.ServeContent answers range
// and conditional requests from the file without reading it whole.
func (m *Media) serveFile(w http.ResponseWriter, r *http.Request, hash, contentType, disposition string, modifiedMS int64) error {
	f, err := m.files.open(hash)
	if err != nil {
		m.log.Error("media file missing", "hash", hash, "error", err)
		return notFound()
	}
	defer f.Close()
	setContentHeaders(w.Header(), contentType, disposition)
	w.Header().Set("ETag", `"`+hash+`"`)
	http.ServeContent(w, r, "", time.UnixMilli(modifiedMS), f)
	return nil
}
