package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/userapi"
)

// Thumbnail methods (client-server API, "Thumbnails").
const (
	methodCrop  = "crop"
	methodScale = "scale"
)

// thumbSize is one pre-set thumbnail size.
type thumbSize struct {
	method string
	width  int
	height int
}

// presets are the sizes the spec suggests (client-server API, "Thumbnails"), smallest first
// within each method. Thumbnails are only ever made at these sizes, so a client cannot make
// the server store an unbounded number of variants.
var presets = []thumbSize{
	{methodCrop, 32, 32},
	{methodCrop, 96, 96},
	{methodScale, 320, 240},
	{methodScale, 640, 480},
	{methodScale, 800, 600},
}

// chooseSize picks the smallest pre-set size of the method at least as large as the request
// in both dimensions, as the spec wants thumbnails never smaller than asked; ok is false when
// none is that large.
func chooseSize(method string, width, height int) (thumbSize, bool) {
	for _, p := range presets {
		if p.method == method && p.width >= width && p.height >= height {
			return p, true
		}
	}
	return thumbSize{}, false
}

// maxAnimatedOriginal bounds the animated images served whole for animated=true.
const maxAnimatedOriginal = 4 << 20

// thumbParams are the query parameters of a thumbnail request.
type thumbParams struct {
	width, height int
	method        string
	animated      bool
}

func parseThumbParams(r *http.Request) (thumbParams, error) {
	q := r.URL.Query()
	p := thumbParams{method: q.Get("method")}
	for _, d := range []struct {
		name string
		dst  *int
	}{{"width", &p.width}, {"height", &p.height}} {
		v := q.Get(d.name)
		if v == "" {
			return p, httpapi.MissingParam("%s is required", d.name)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<16 {
			return p, httpapi.InvalidParam("%s must be a positive integer", d.name)
		}
		*d.dst = n
	}
	switch p.method {
	case "":
		p.method = methodScale
	case methodCrop, methodScale:
	default:
		return p, httpapi.InvalidParam("method must be crop or scale")
	}
	var err error
	p.animated, err = boolParam(q.Get("animated"), false, "animated")
	return p, err
}

// thumbnailAuthed answers GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}.
func (m *Media) thumbnailAuthed(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	return m.thumbnail(w, r, false)
}

// thumbnailLegacy answers GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}.
func (m *Media) thumbnailLegacy(w http.ResponseWriter, r *http.Request) error {
	return m.thumbnail(w, r, true)
}

// thumbnail serves a thumbnail (client-server API, "Thumbnails"):
//   - the original, when it is smaller than requested, when no pre-set size is as large as
//     requested (a thumbnail must never be smaller than asked), or when an animated thumbnail
//     is asked for and the original is an animated GIF or WebP of at most 4 MiB; but never an
//     animated original unless animated=true;
//   - otherwise a still (the first frame of an animation) at the chosen pre-set size, made
//     once and kept as a media file with its own row.
//
// Content that is not a JPEG, PNG, GIF or WebP image answers 400, images of more than
// max_image_pixels 413 M_TOO_LARGE, both without decoding the pixels.
func (m *Media) thumbnail(w http.ResponseWriter, r *http.Request, legacy bool) error {
	ref, err := refOf(r)
	if err != nil {
		return err
	}
	p, err := parseThumbParams(r)
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
	f, err := m.files.open(item.SHA256)
	if err != nil {
		m.log.Error("media file missing", "media", ref.String(), "error", err)
		return notFound()
	}
	info, err := probe(f, m.cfg.MaxImagePixels)
	f.Close()
	if err != nil {
		return thumbErr(err)
	}

	size, ok := chooseSize(p.method, p.width, p.height)
	smaller := info.width <= p.width && info.height <= p.height
	fits := ok && p.method == methodScale && info.width <= size.width && info.height <= size.height
	switch {
	case p.animated && info.animated && item.Size <= maxAnimatedOriginal:
		return m.serveOriginal(w, r, item, info)
	case (smaller || !ok || fits) && !info.animated:
		return m.serveOriginal(w, r, item, info)
	case smaller || !ok || fits:
		// An animation asked for as a still at its full size: its first frame, uncropped.
		size = thumbSize{method: methodScale, width: info.width, height: info.height}
	}
	th, err := m.thumbnailFor(r.Context(), ref, item, info, size)
	if err != nil {
		return err
	}
	return m.serveFile(w, r, th.SHA256, th.ContentType, thumbDisposition(th.ContentType), th.CreatedTS)
}

func thumbErr(err error) error {
	switch {
	case errors.Is(err, errImageTooLarge):
		return httpapi.TooLarge("Content is too large to thumbnail")
	case errors.Is(err, errNotImage):
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")
	}
	return err
}

// thumbDisposition is the Content-Disposition of a thumbnail: always inline (spec v1.12).
func thumbDisposition(contentType string) string {
	ext := "png"
	switch contentType {
	case "image/jpeg":
		ext = "jpg"
	case "image/gif":
		ext = "gif"
	case "image/webp":
		ext = "webp"
	}
	return `inline; filename="thumbnail.` + ext + `"`
}

// serveOriginal serves the original image as its own thumbnail, typed by its sniffed format.
func (m *Media) serveOriginal(w http.ResponseWriter, r *http.Request, item *mediastore.Media, info imageInfo) error {
	ct := formatTypes[info.format]
	return m.serveFile(w, r, item.SHA256, ct, thumbDisposition(ct), item.UploadedTS)
}

// thumbnailFor returns the stored thumbnail of a size, making and storing it first if there
// is none. Requests for the same thumbnail share one making of it.
func (m *Media) thumbnailFor(ctx context.Context, ref mediaRef, item *mediastore.Media, info imageInfo, size thumbSize) (*mediastore.Thumbnail, error) {
	th, err := m.store.Thumbnail(ctx, ref.server, ref.id, size.method, size.width, size.height)
	if err == nil {
		return th, nil
	} else if !errors.Is(err, mediastore.ErrNotFound) {
		return nil, err
	}
	key := fmt.Sprintf("thumb %s %s %dx%d", ref, size.method, size.width, size.height)
	v, err := m.flights.do(key, func() (any, error) {
		// Shared with other requests: one client hanging up must not end it for the rest.
		return m.makeThumbnail(context.WithoutCancel(ctx), ref, item, info, size)
	})
	if err != nil {
		return nil, err
	}
	return v.(*mediastore.Thumbnail), nil
}

func (m *Media) makeThumbnail(ctx context.Context, ref mediaRef, item *mediastore.Media, info imageInfo, size thumbSize) (*mediastore.Thumbnail, error) {
	if th, err := m.store.Thumbnail(ctx, ref.server, ref.id, size.method, size.width, size.height); err == nil {
		return th, nil // made by the run that just ended
	}
	start := time.Now()
	m.thumbSlots <- struct{}{}
	data, ct, w, h, err := m.render(item.SHA256, info, size)
	<-m.thumbSlots
	if err != nil {
		return nil, thumbErr(err)
	}
	st, err := m.files.stage(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	th := mediastore.Thumbnail{
		ServerName: ref.server, MediaID: ref.id, Method: size.method, ReqWidth: size.width, ReqHeight: size.height,
		Width: w, Height: h, SHA256: st.hash, Size: st.size, ContentType: ct, CreatedTS: time.Now().UnixMilli(),
	}
	err = m.commit(ctx, st, func() error { return m.store.PutThumbnail(ctx, th) })
	if errors.Is(err, mediastore.ErrNotFound) {
		return nil, notFound() // deleted meanwhile
	} else if err != nil {
		return nil, err
	}
	m.log.Debug("thumbnail made", "media", ref.String(), "method", size.method, "width", w, "height", h,
		"duration", time.Since(start))
	// Another process may have stored one first; answer with whatever is stored.
	return m.store.Thumbnail(ctx, ref.server, ref.id, size.method, size.width, size.height)
}

// render decodes the image (its first frame) and encodes its thumbnail.
func (m *Media) render(hash string, info imageInfo, size thumbSize) (data []byte, contentType string, w, h int, err error) {
	f, err := m.files.open(hash)
	if err != nil {
		return nil, "", 0, 0, err
	}
	defer f.Close()
	img, err := decodeStill(f, info, m.cfg.MaxImagePixels)
	if err != nil {
		return nil, "", 0, 0, err
	}
	thumb := resize(img, size.method, size.width, size.height)
	data, contentType, err = encodeThumbnail(thumb, info.format)
	if err != nil {
		return nil, "", 0, 0, err
	}
	b := thumb.Bounds()
	return data, contentType, b.Dx(), b.Dy(), nil
}
