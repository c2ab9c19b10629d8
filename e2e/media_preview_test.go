package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
)

// previewSite is a web site on loopback with an OpenGraph page, a page with only a title and
// a description, and an image; it counts the requests it gets.
func previewSite(t *testing.T, img []byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/article", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="Lattice &amp; friends">
<meta property="og:description" content="A page about   a homeserver.">
<meta property="og:type" content="article">
<meta property="og:image" content="/img.png">
<meta property="og:image:width" content="9999">
</head><body><p>Hello</p></body></html>`))
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<html><head><title>Only a title</title><meta name="description" content="And a description"></head></html>`))
	})
	mux.HandleFunc("/fake-image", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<html><head><meta property="og:title" content="Fake"><meta property="og:image" content="/article"></head></html>`))
	})
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

func previewQuery(target string) string { return "/preview_url?url=" + url.QueryEscape(target) }

// TestMediaPreview previews a page served by the test on loopback (allowed in this test's
// config only): its OpenGraph data, with the image copied into the media repository.
func TestMediaPreview(t *testing.T) {
	s := Start(t, withMedia(func(m *config.Media) {
		m.URLPreview.Enabled = true
		m.URLPreview.AllowPrivateAddresses = true
	}))
	alice := s.NewUser(t, "alice")
	img := testPNG(t, 120, 60)
	site, hits := previewSite(t, img)

	resp, err := alice.GetURLPreview(ctx(t), site.URL+"/article#section")
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := mediaGet(t, s, alice, mediaV1, previewQuery(site.URL+"/article"))
	var og map[string]any
	if status != 200 || json.Unmarshal(body, &og) != nil {
		t.Fatalf("preview: %d %s", status, body)
	}
	if og["og:title"] != "Lattice & friends" || og["og:description"] != "A page about a homeserver." || og["og:type"] != "article" ||
		og["og:image:width"] != 120.0 || og["og:image:height"] != 60.0 || og["matrix:image:size"] != float64(len(img)) ||
		og["og:image:type"] != "image/png" {
		t.Fatalf("preview: %s", body)
	}
	mxc, err := id.ParseContentURI(og["og:image"].(string))
	if err != nil || mxc.Homeserver != "localhost" || resp.ImageURL != mxc.CUString() {
		t.Fatalf("og:image %v (mautrix saw %q): %v", og["og:image"], resp.ImageURL, err)
	}
	got, err := alice.DownloadBytes(ctx(t), mxc)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("preview image: %d bytes, %v", len(got), err)
	}
	// The fragment is dropped and the preview cached: the site saw one page and one image request.
	if n := hits.Load(); n != 2 {
		t.Fatalf("site got %d requests, want 2", n)
	}
	status, _, body = mediaGet(t, s, alice, mediaV3, previewQuery(site.URL+"/article"))
	if status != 200 || hits.Load() != 2 {
		t.Fatalf("legacy preview: %d %s after %d requests", status, body, hits.Load())
	}

	status, _, body = mediaGet(t, s, alice, mediaV1, previewQuery(site.URL+"/plain"))
	wantOK(t, status, body, `{"og:title": "Only a title", "og:description": "And a description"}`)

	// An og:image that is no image is left out.
	status, _, body = mediaGet(t, s, alice, mediaV1, previewQuery(site.URL+"/fake-image"))
	wantOK(t, status, body, `{"og:title": "Fake"}`)

	// A URL of an image previews as the image.
	status, _, body = mediaGet(t, s, alice, mediaV1, previewQuery(site.URL+"/img.png"))
	og = nil
	if status != 200 || json.Unmarshal(body, &og) != nil || og["og:image:width"] != 120.0 || og["og:image"] == nil {
		t.Fatalf("image preview: %d %s", status, body)
	}
	// A page that does not exist is a failed fetch, not our fault.
	status, _, body = mediaGet(t, s, alice, mediaV1, previewQuery(site.URL+"/missing"))
	wantError(t, status, body, 502, "M_UNKNOWN")

	for _, q := range []struct {
		query  string
		status int
		code   string
	}{
		{"/preview_url", 400, "M_MISSING_PARAM"},
		{previewQuery("ftp://example.org/"), 400, "M_INVALID_PARAM"},
		{previewQuery("/relative"), 400, "M_INVALID_PARAM"},
		{previewQuery("http://user:pw@example.org/"), 400, "M_INVALID_PARAM"},
		{previewQuery(site.URL+"/article") + "&ts=yesterday", 400, "M_INVALID_PARAM"},
	} {
		status, _, body := mediaGet(t, s, alice, mediaV1, q.query)
		wantError(t, status, body, q.status, q.code)
	}
}

// TestMediaPreviewRefusesPrivate asks for the same page with the default config, which refuses
// private and loopback addresses: an M_FORBIDDEN answer, and the site never hears of it.
func TestMediaPreviewRefusesPrivate(t *testing.T) {
	s := Start(t, withMedia(func(m *config.Media) { m.URLPreview.Enabled = true }))
	alice := s.NewUser(t, "alice")
	site, hits := previewSite(t, testPNG(t, 10, 10))
	u, _ := url.Parse(site.URL)
	for _, target := range []string{
		site.URL + "/article",
		"http://localhost:" + u.Port() + "/article",
		"http://[::1]:" + u.Port() + "/article",
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/",
	} {
		status, _, body := mediaGet(t, s, alice, mediaV1, previewQuery(target))
		if status == 500 || status == 200 {
			t.Fatalf("%s: %d %s", target, status, body)
		}
		var e struct {
			ErrCode string `json:"errcode"`
		}
		if json.Unmarshal(body, &e) != nil || e.ErrCode == "" {
			t.Fatalf("%s: %d %s is no Matrix error", target, status, body)
		}
		t.Logf("%s: %d %s", target, status, e.ErrCode)
	}
	status, _, body := mediaGet(t, s, alice, mediaV1, previewQuery(site.URL+"/article"))
	wantError(t, status, body, 403, "M_FORBIDDEN")
	if n := hits.Load(); n != 0 {
		t.Fatalf("the site on loopback got %d requests", n)
	}
}
