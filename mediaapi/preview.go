package mediaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/html/charset"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/safehttp"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/userapi"
)

// previewBucket is the time span one cached preview of a URL stands for.
const previewBucket = time.Hour

// maxPreviewURL bounds the URLs that are previewed, in bytes.
const maxPreviewURL = 2048

// previewUserAgent is sent with preview requests, so site owners can tell what fetched.
const previewUserAgent = "Lattice URL preview (Matrix homeserver)"

// previewURL answers GET /_matrix/client/v1/media/preview_url and its deprecated
// /_matrix/media/v3 twin. Previews are cached in the database per URL and hour; ts picks the
// hour of an older preview when one is cached.
func (m *Media) previewURL(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	if !m.cfg.URLPreview.Enabled {
		return httpapi.Unrecognized("URL previews are disabled on this server")
	}
	q := r.URL.Query()
	u, err := previewTarget(q.Get("url"))
	if err != nil {
		return err
	}
	now := time.Now()
	at := now
	if v := q.Get("ts"); v != "" {
		ts, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return httpapi.InvalidParam("ts must be an integer (milliseconds since the epoch)")
		}
		if ts > 0 && ts < now.UnixMilli() {
			at = time.UnixMilli(ts)
		}
	}
	ctx := r.Context()
	key := u.String()
	if cached, err := m.store.Preview(ctx, key, bucketOf(at)); err == nil {
		return writeRawJSON(w, cached)
	} else if !errors.Is(err, mediastore.ErrNotFound) {
		return err
	}
	if at != now {
		if cached, err := m.store.Preview(ctx, key, bucketOf(now)); err == nil {
			return writeRawJSON(w, cached)
		}
	}
	v, err := m.flights.do("preview "+key, func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		og, err := m.fetchPreview(ctx, u)
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(og)
		if err != nil {
			return nil, err
		}
		if err := m.store.PutPreview(ctx, key, bucketOf(now), data, now.UnixMilli()); err != nil {
			m.log.Warn("cache URL preview", "error", err)
		}
		return data, nil
	})
	if err != nil {
		return err
	}
	return writeRawJSON(w, v.([]byte))
}

func bucketOf(t time.Time) int64 { return t.UnixMilli() / previewBucket.Milliseconds() }

func writeRawJSON(w http.ResponseWriter, data []byte) error {
	httpapi.WriteJSON(w, http.StatusOK, json.RawMessage(data))
	return nil
}

// previewTarget checks the url parameter: an absolute http or https URL with a host. The
// fragment is dropped; it never reaches the server.
func previewTarget(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, httpapi.MissingParam("url is required")
	}
	if len(raw) > maxPreviewURL {
		return nil, httpapi.InvalidParam("url is longer than %d bytes", maxPreviewURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
		return nil, httpapi.InvalidParam("url must be an absolute http or https URL")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// fetchPreview fetches a page and builds its preview: its OpenGraph data, with og:image
// replaced by a copy of the image in the media repository. A URL of an image previews as that
// image. Addresses the config refuses answer 403 M_FORBIDDEN, unreachable pages 502.
func (m *Media) fetchPreview(ctx context.Context, u *url.URL) (map[string]any, error) {
	resp, err := m.previewGet(ctx, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	og := map[string]any{}
	switch {
	case strings.HasPrefix(mt, "image/"):
		if err := m.previewImage(ctx, og, resp); err != nil {
			m.log.Info("URL preview image not kept", "error", err)
		}
		return og, nil
	case mt == "text/html" || mt == "application/xhtml+xml":
	default:
		return og, nil // nothing to show of other content
	}
	body, err := charset.NewReader(io.LimitReader(resp.Body, m.cfg.URLPreview.MaxSize), resp.Header.Get("Content-Type"))
	if err != nil {
		return og, nil // an unknown charset: no preview rather than a garbled one
	}
	page := parseOpenGraph(body)
	for k, v := range page {
		// The page's own image keys describe its URL; ours describe the stored copy.
		if k != "og:image" && !strings.HasPrefix(k, "og:image:") {
			og[k] = v
		}
	}
	if img := page["og:image"]; img != "" {
		if err := m.previewImageURL(ctx, og, resp.Request.URL, img); err != nil {
			m.log.Info("URL preview image not kept", "error", err)
		}
	}
	return og, nil
}

// previewGet sends a GET through the client that refuses addresses the config does not
// allow, also after redirects and at every dial.
func (m *Media) previewGet(ctx context.Context, u *url.URL) (*http.Response, error) {
	if !m.cfg.URLPreview.AllowPrivateAddresses {
		// An early, friendlier answer; the client's dial-time check is what enforces.
		if err := safehttp.CheckHost(ctx, u.Hostname()); errors.Is(err, safehttp.ErrRefused) {
			return nil, previewRefused()
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, httpapi.InvalidParam("url cannot be fetched")
	}
	req.Header.Set("User-Agent", previewUserAgent)
	req.Header.Set("Accept", "text/html, application/xhtml+xml, image/*;q=0.9, */*;q=0.1")
	resp, err := m.preview.Do(req)
	if errors.Is(err, safehttp.ErrRefused) {
		return nil, previewRefused()
	}
	if err != nil {
		m.log.Info("URL preview fetch failed", "host", u.Hostname(), "error", err)
		return nil, httpapi.NewError(http.StatusBadGateway, "M_UNKNOWN", "Could not fetch the URL")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, httpapi.NewError(http.StatusBadGateway, "M_UNKNOWN", "The URL answered with status %d", resp.StatusCode)
	}
	return resp, nil
}

func previewRefused() error {
	return httpapi.Forbidden("This URL's address may not be previewed")
}

// previewImageURL fetches the image a page names (relative to the page's final URL) into
// the media repository and describes it in og.
func (m *Media) previewImageURL(ctx context.Context, og map[string]any, page *url.URL, ref string) error {
	u, err := page.Parse(ref)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("bad image URL %q", ref)
	}
	resp, err := m.previewGet(ctx, u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return m.previewImage(ctx, og, resp)
}

// previewImage stores the image of resp as server-owned media and sets og:image (its mxc
// URI), og:image:type, og:image:width, og:image:height and matrix:image:size. Only images of
// the formats we can read are kept, typed by their content rather than the site's claim.
func (m *Media) previewImage(ctx context.Context, og map[string]any, resp *http.Response) error {
	st, err := m.files.stage(resp.Body, m.cfg.URLPreview.MaxSize)
	if err != nil {
		return fmt.Errorf("download preview image: %w", err)
	}
	ref := mediaRef{server: m.opts.ServerName, id: newMediaID()}
	now := time.Now().UnixMilli()
	item := mediastore.Media{
		ServerName: ref.server, MediaID: ref.id, SHA256: st.hash, Size: st.size,
		CreatedTS: now, UploadedTS: now, LegacyAccess: !m.cfg.FreezeLegacyUnauthenticated,
	}
	var info imageInfo
	if f, err := openStaged(st); err == nil {
		info, _ = probe(f, m.cfg.MaxImagePixels) // an image over the pixel limit still has its size
		f.Close()
	}
	ct, ok := formatTypes[info.format]
	if !ok || info.width == 0 {
		// Clients show og:image as an image; whatever else a page points at is not kept.
		m.files.discard(st)
		return errors.New("preview image is not a JPEG, PNG, GIF or WebP image")
	}
	item.ContentType = ct
	if err := m.commit(ctx, st, func() error { return m.store.Insert(ctx, item) }); err != nil {
		return err
	}
	og["og:image"] = ref.mxc()
	og["og:image:type"] = item.ContentType
	og["matrix:image:size"] = st.size
	og["og:image:width"] = info.width
	og["og:image:height"] = info.height
	return nil
}
