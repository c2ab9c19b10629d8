package mediaapi

import (
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// contentSecurityPolicy is the policy the spec recommends for served content
// (client-server API, "Content repository").
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';"

// inlineTypes are the content types the spec lets servers serve inline (client-server API,
// "Serving inline content"); everything else is an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// inlineSafe reports whether content of this type may be served inline: its media type,
// without parameters and in lower case, is on the spec's list.
func inlineSafe(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return inlineTypes[mt]
}

// contentDisposition is the Content-Disposition of served content: inline for the safe types,
// attachment otherwise, with the file name when there is one (RFC 6266). A name of plain
// printable ASCII goes in a quoted filename; any other is percent-encoded UTF-8 in filename*
// (RFC 5987), which every current browser reads, with an ASCII fallback in filename.
func contentDisposition(contentType, filename string) string {
	disp := "attachment"
	if inlineSafe(contentType) {
		disp = "inline"
	}
	filename = strings.Map(func(r rune) rune {
		if isControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, filename)
	if filename == "" {
		return disp
	}
	if plainASCII(filename) {
		return disp + `; filename="` + filename + `"`
	}
	return disp + `; filename="` + asciiFallback(filename) + `"; filename*=utf-8''` + encodeRFC5987(filename)
}

// plainASCII reports whether s can be a quoted filename as it is: printable ASCII without the
// quote and backslash that would need escaping (which browsers handle inconsistently).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// asciiFallback replaces what plainASCII refuses with '_'.
func asciiFallback(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			b.WriteByte('_')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// encodeRFC5987 percent-encodes s for an ext-value: attr-chars stay, all other bytes become %XX.
func encodeRFC5987(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// setContentHeaders sets the headers of every served media body: its type and disposition,
// the sandboxing Content-Security-Policy, no type sniffing, and the cross-origin resource
// policy web clients need (spec v1.4).
func setContentHeaders(h http.Header, contentType, disposition string) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", disposition)
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// Media never changes under its ID; only a deletion or quarantine ends it.
	h.Set("Cache-Control", "private, max-age=86400")
}
