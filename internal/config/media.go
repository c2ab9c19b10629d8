package config

import "time"

// Media configures the media repository (mediaapi): uploads, downloads, thumbnails and URL
// previews (client-server API, "Content repository").
type Media struct {
	// Path is the folder media files are kept in, named by the SHA-256 of their content.
	Path string `yaml:"path"`
	// MaxUploadSize is the largest upload accepted, in bytes; larger ones get 413 M_TOO_LARGE.
	MaxUploadSize int64 `yaml:"max_upload_size"`
	// MaxImagePixels is the largest image (width × height) that is decoded to make thumbnails;
	// larger ones get 413 M_TOO_LARGE without being decoded.
	MaxImagePixels int64 `yaml:"max_image_pixels"`
	// FreezeLegacyUnauthenticated makes media stored from now on reachable only through the
	// authenticated /_matrix/client/v1/media endpoints (spec v1.11 "freeze").
	FreezeLegacyUnauthenticated bool `yaml:"freeze_legacy_unauthenticated"`
	// MaxPendingUploads bounds the media IDs one user has created and not yet uploaded to.
	MaxPendingUploads int `yaml:"max_pending_uploads"`
	// UnusedExpiry is how long a created media ID waits for its upload.
	UnusedExpiry time.Duration `yaml:"unused_expiry"`
	// URLPreview configures GET /media/preview_url.
	URLPreview URLPreview `yaml:"url_preview"`
}

// URLPreview configures URL previews: the server fetches pages its users link to.
type URLPreview struct {
	// Enabled turns the preview endpoints on.
	Enabled bool `yaml:"enabled"`
	// AllowPrivateAddresses lets previews reach private, loopback and link-local addresses.
	AllowPrivateAddresses bool `yaml:"allow_private_addresses"`
	// MaxSize bounds the bytes read of a page and of its image.
	MaxSize int64 `yaml:"max_size"`
	// Timeout bounds each fetch of a page or image.
	Timeout time.Duration `yaml:"timeout"`
}

func defaultMedia() Media {
	return Media{
		Path:              "media",
		MaxUploadSize:     50 << 20,
		MaxImagePixels:    32_000_000,
		MaxPendingUploads: 10,
		UnusedExpiry:      24 * time.Hour,
		URLPreview: URLPreview{
			MaxSize: 10 << 20,
			Timeout: 10 * time.Second,
		},
	}
}

func (m *Media) validate() error {
	if m.Path == "" {
		return keyErr("media.path", "must be set")
	}
	if m.MaxUploadSize < 1 {
		return keyErr("media.max_upload_size", "must be at least 1 (bytes)")
	}
	if m.MaxImagePixels < 1 {
		return keyErr("media.max_image_pixels", "must be at least 1")
	}
	if m.MaxPendingUploads < 1 {
		return keyErr("media.max_pending_uploads", "must be at least 1")
	}
	if m.UnusedExpiry < time.Second {
		return keyErr("media.unused_expiry", "must be at least 1s")
	}
	if m.URLPreview.MaxSize < 1024 {
		return keyErr("media.url_preview.max_size", "must be at least 1024 (bytes)")
	}
	if m.URLPreview.Timeout < 100*time.Millisecond {
		return keyErr("media.url_preview.timeout", "must be at least 100ms")
	}
	return nil
}

// mediaTemplate is the media section of the generated config file.
const mediaTemplate = `media:
  # Folder of the media repository's files (uploads, thumbnails, preview images), relative to
  # this file's folder. Files are named by the SHA-256 of their content, so the same bytes are
  # stored once; names, types and owners are kept in the database. Default: media
  path: {{q .Media.Path}}
  # Largest upload in bytes (52428800 is 50 MiB); larger ones are refused with 413 M_TOO_LARGE.
  # Clients read it from /media/config. Default: 52428800
  max_upload_size: {{.Media.MaxUploadSize}}
  # Largest image, in pixels (width × height), that is decoded to make thumbnails. The size is
  # read from the image's header first, so a small file claiming huge dimensions is refused
  # (413 M_TOO_LARGE) without being decoded. Default: 32000000
  max_image_pixels: {{.Media.MaxImagePixels}}
  # Serve media stored from now on only through the authenticated /_matrix/client/v1/media
  # endpoints; the deprecated unauthenticated /_matrix/media/v3/download and thumbnail answer
  # 404 for it, while media stored before keep working there (spec v1.11). Default: false
  freeze_legacy_unauthenticated: {{.Media.FreezeLegacyUnauthenticated}}
  # Media IDs one user may have created (POST /_matrix/media/v1/create) and not yet uploaded
  # to; more get 429 M_LIMIT_EXCEEDED. Default: 10
  max_pending_uploads: {{.Media.MaxPendingUploads}}
  # How long a created media ID waits for its upload before it expires. Default: 24h0m0s
  unused_expiry: {{.Media.UnusedExpiry}}
  url_preview:
    # Answer GET /media/preview_url: the server fetches a page a user links to and returns
    # its OpenGraph data, the page's image kept in the media repository. Off, the endpoint
    # answers 404 M_UNRECOGNIZED. Default: false
    enabled: {{.Media.URLPreview.Enabled}}
    # Let previews fetch pages on private, loopback and link-local addresses (this host or
    # network). Off, such addresses are refused, also after redirects and DNS changes.
    # Default: false
    allow_private_addresses: {{.Media.URLPreview.AllowPrivateAddresses}}
    # Bytes read of a page (the rest is ignored) and largest preview image. Default: 10485760
    max_size: {{.Media.URLPreview.MaxSize}}
    # Time limit of fetching a page or its image. Default: 10s
    timeout: {{.Media.URLPreview.Timeout}}
`
