package mediaapi

import (
	"mime"
	"net/http"
	"testing"
)

func TestInlineSafe(t *testing.T) {
	for _, ct := range []string{"image/png", "IMAGE/PNG", "text/plain; charset=utf-8", "video/mp4", "audio/x-flac", "application/ld+json"} {
		if !inlineSafe(ct) {
			t.Errorf("%q not inline", ct)
		}
	}
	for _, ct := range []string{"text/html", "image/svg+xml", "application/javascript", "application/octet-stream", "text/xml", "", "image/png;;;", "application/pdf"} {
		if inlineSafe(ct) {
			t.Errorf("%q inline", ct)
		}
	}
}

func TestContentDisposition(t *testing.T) {
	for _, tc := range []struct{ ct, name, want string }{
		{"image/png", "", "inline"},
		{"text/html", "", "attachment"},
		{"image/png", "cat.png", `inline; filename="cat.png"`},
		{"text/html", "page.html", `attachment; filename="page.html"`},
		{"text/plain", "a \"quoted\" name.txt", `inline; filename="a _quoted_ name.txt"; filename*=utf-8''a%20%22quoted%22%20name.txt`},
		{"text/plain", "€ rates.txt", `inline; filename="_ rates.txt"; filename*=utf-8''%E2%82%AC%20rates.txt`},
		{"application/pdf", "bad\r\nHeader: x", `attachment; filename="badHeader: x"`},
		{"application/pdf", "back\\slash", `attachment; filename="back_slash"; filename*=utf-8''back%5Cslash`},
	} {
		got := contentDisposition(tc.ct, tc.name)
		if got != tc.want {
			t.Errorf("contentDisposition(%q, %q) = %s, want %s", tc.ct, tc.name, got, tc.want)
		}
		// Whatever the name, the header parses and gives the name back (without control characters).
		disp, params, err := mime.ParseMediaType(got)
		if err != nil || (disp != "inline" && disp != "attachment") {
			t.Errorf("%s does not parse: %v", got, err)
		}
		if tc.name != "" && params["filename"] == "" {
			t.Errorf("%s lost the file name", got)
		}
	}
}

func TestContentHeaders(t *testing.T) {
	h := http.Header{}
	setContentHeaders(h, "image/png", "inline")
	for k, v := range map[string]string{
		"Content-Security-Policy":      contentSecurityPolicy,
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Resource-Policy": "cross-origin",
		"Content-Type":                 "image/png",
	} {
		if h.Get(k) != v {
			t.Errorf("%s: %q", k, h.Get(k))
		}
	}
}
