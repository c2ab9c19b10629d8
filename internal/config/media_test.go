package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMediaValidate(t *testing.T) {
	for _, tc := range []struct {
		key    string
		change func(*Media)
	}{
		{"media.path", func(m *Media) { m.Path = "" }},
		{"media.max_upload_size", func(m *Media) { m.MaxUploadSize = 0 }},
		{"media.max_upload_size", func(m *Media) { m.MaxUploadSize = -5 }},
		{"media.max_image_pixels", func(m *Media) { m.MaxImagePixels = -1 }},
		{"media.max_pending_uploads", func(m *Media) { m.MaxPendingUploads = 0 }},
		{"media.unused_expiry", func(m *Media) { m.UnusedExpiry = time.Millisecond }},
		{"media.url_preview.max_size", func(m *Media) { m.URLPreview.MaxSize = 10 }},
		{"media.url_preview.timeout", func(m *Media) { m.URLPreview.Timeout = 0 }},
		{"media.url_preview.timeout", func(m *Media) { m.URLPreview.Timeout = -time.Second }},
	} {
		cfg := Default("example.org")
		tc.change(&cfg.Media)
		var ke *KeyError
		if err := cfg.Validate(); !errors.As(err, &ke) || ke.Key != tc.key {
			t.Errorf("%s: Validate() = %v", tc.key, err)
		}
	}
	if err := Default("example.org").Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestMediaParse(t *testing.T) {
	cfg, err := Parse([]byte(`server_name: a
media:
  path: /srv/media
  max_upload_size: 1000000
  freeze_legacy_unauthenticated: true
  unused_expiry: 1h
  url_preview: {enabled: true, allow_private_addresses: true, max_size: 2048, timeout: 3s}
`), "/d", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Media
	want := defaultMedia()
	want.Path, want.MaxUploadSize, want.FreezeLegacyUnauthenticated, want.UnusedExpiry = "/srv/media", 1000000, true, time.Hour
	want.URLPreview = URLPreview{Enabled: true, AllowPrivateAddresses: true, MaxSize: 2048, Timeout: 3 * time.Second}
	if m != want {
		t.Fatalf("parsed %+v, want %+v", m, want)
	}
	if got := cfg.Path(m.Path); got != "/srv/media" {
		t.Fatalf("absolute path resolved to %q", got)
	}
	if got := Default("x").Media.Path; (&Config{Dir: "/d"}).Path(got) != "/d/media" {
		t.Fatalf("default path resolves to %q", (&Config{Dir: "/d"}).Path(got))
	}
	for _, bad := range []struct{ yaml, key string }{
		{"server_name: a\nmedia:\n  max_upload_size: big\n", "media.max_upload_size"},
		{"server_name: a\nmedia:\n  url_preview:\n    enabled: sometimes\n", "media.url_preview.enabled"},
		{"server_name: a\nmedia:\n  thumbnails: 3\n", "media.thumbnails"},
		{"server_name: a\nmedia:\n  unused_expiry: 10\n", "media.unused_expiry"},
	} {
		_, err := Parse([]byte(bad.yaml), "/d", noEnv)
		if err == nil || !strings.HasPrefix(err.Error(), bad.key+": ") {
			t.Errorf("%q: error %v does not name %s", bad.yaml, err, bad.key)
		}
	}
}

// TestMediaRoundTrip checks that every media option survives Generate and Parse with
// values other than the defaults.
func TestMediaRoundTrip(t *testing.T) {
	cfg := Default("example.org")
	cfg.Dir = "/d"
	cfg.Media = Media{Path: "data/media files", MaxUploadSize: 123456789, MaxImagePixels: 1000,
		FreezeLegacyUnauthenticated: true, MaxPendingUploads: 3, UnusedExpiry: 90 * time.Minute,
		URLPreview: URLPreview{Enabled: true, AllowPrivateAddresses: true, MaxSize: 4096, Timeout: 1500 * time.Millisecond}}
	out, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(out, "/d", noEnv)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, out)
	}
	if got.Media != cfg.Media {
		t.Fatalf("round trip: %+v, want %+v", got.Media, cfg.Media)
	}
}
