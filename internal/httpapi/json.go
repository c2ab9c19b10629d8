package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// DefaultBodyLimit is the largest JSON body ReadJSON accepts: 1 MiB.
//
// The biggest client bodies are end-to-end key traffic: /keys/upload with a
// batch of one-time keys, /room_keys/keys backup batches and /sendToDevice
// with an encrypted message for each of a few hundred devices. Clients batch
// those at well under 1 MiB, and events themselves are capped at 65536 bytes.
// Federation /send transactions (up to 50 PDUs and 100 EDUs) need more and
// should call ReadJSONLimit.
const DefaultBodyLimit = 1 << 20

// ReadJSON decodes the request body into dst, accepting at most DefaultBodyLimit bytes.
func ReadJSON(r *http.Request, dst any) error {
	return ReadJSONLimit(r, dst, DefaultBodyLimit)
}

// ReadJSONLimit decodes the request body into dst, accepting at most limit bytes (DefaultBodyLimit if limit <= 0).
//
// Errors are *Error values ready to answer: 413 M_TOO_LARGE, 400 M_NOT_JSON for
// anything that is not one UTF-8 JSON value, 400 M_BAD_JSON for JSON of the
// wrong shape. dst may be partly filled when an error is returned. The
// Content-Type header is not checked: the spec lets clients omit it.
func ReadJSONLimit(r *http.Request, dst any, limit int64) error {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	if limit == math.MaxInt64 {
		limit-- // room for the one extra byte that tells "exactly limit" from "more"
	}
	// Refuse an announced oversize body before reading any of it.
	if r.ContentLength > limit {
		return tooLarge(limit)
	}
	if r.Body == nil {
		return NotJSON("Request body is empty")
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// Size the buffer for the announced body, but only up to 64 KiB
		// before any of it arrives: a client announcing a large body and
		// sending nothing must not pin the full limit per connection.
		buf.Grow(int(min(r.ContentLength, 64<<10)))
	}
	// A chunked body has no Content-Length; read one byte past the limit to
	// notice it is too long without buffering the rest.
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return tooLarge(maxErr.Limit)
		}
		// Malformed chunking or a client that hung up mid-body: bad input, not our fault.
		return NotJSON("Could not read request body")
	}
	data := buf.Bytes()
	if int64(len(data)) > limit {
		return tooLarge(limit)
	}
	return decodeJSON(data, dst)
}

// hasNULEscape reports whether valid JSON data holds a \u0000 escape, the only way JSON text can
// carry U+0000 (a raw NUL byte is not valid JSON).
func hasNULEscape(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' || i+1 >= len(data) {
			continue
		}
		if data[i+1] == 'u' && i+5 < len(data) && string(data[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character: an escaped backslash followed by "u0000" is no NUL
	}
	return false
}

func tooLarge(limit int64) *Error {
	return TooLarge("Request body is larger than %d bytes", limit)
}

// decodeJSON unmarshals data into dst and sorts failures into M_NOT_JSON and M_BAD_JSON.
func decodeJSON(data []byte, dst any) error {
	// "All JSON data, in requests or responses, must be encoded using UTF-8."
	// encoding/json would silently turn bad bytes into U+FFFD, which changes
	// what a signed object says.
	if !utf8.Valid(data) {
		return NotJSON("Request body is not valid UTF-8")
	}
	err := json.Unmarshal(data, dst)
	if err == nil {
		if isNull(data) && wantsObject(dst) {
			// Unmarshal takes null as "leave dst alone", but every Matrix
			// request body is an object.
			return BadJSON("Request body must be a JSON object, got null")
		}
		if hasNULEscape(data) {
			// No Matrix identifier or text needs U+0000, and PostgreSQL refuses
			// it in text: without this a client's typo would become a 500.
			return BadJSON("Strings must not contain the NUL character (U+0000)")
		}
		return nil
	}

	var (
		synErr  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		dstErr  *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &dstErr):
		return fmt.Errorf("decode JSON body: %w", err) // our bug, not the client's: a 500
	case len(bytes.TrimSpace(data)) == 0:
		return NotJSON("Request body is empty")
	case errors.As(err, &synErr) && !json.Valid(data):
		// Unmarshal checks the whole input before decoding, so syntax errors
		// (and trailing data after the value) come out here. The Valid check
		// keeps a SyntaxError from a custom UnmarshalJSON on valid input in the
		// M_BAD_JSON branch.
		return NotJSON("Request body is not valid JSON: %s (at byte %d)", synErr.Error(), synErr.Offset)
	case errors.As(err, &typeErr):
		want := jsonKind(typeErr.Type)
		if want == "number" && strings.HasPrefix(typeErr.Value, "number") {
			// Right JSON type, but a fraction for an integer or out of range.
			return BadJSON("Invalid value for %q: %s does not fit %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		if typeErr.Field == "" {
			return BadJSON("Request body must be a JSON %s, got %s", want, typeErr.Value)
		}
		return BadJSON("Invalid type for %q: expected %s, got %s", typeErr.Field, want, typeErr.Value)
	default:
		// A field's own UnmarshalJSON refused its value (an identifier of the
		// wrong form, say): the client's mistake, described by that method.
		return BadJSON("Invalid JSON body: %v", err)
	}
}

func isNull(data []byte) bool {
	return string(bytes.TrimSpace(data)) == "null"
}

// wantsObject reports whether dst points at a struct or map, the Go shapes of a JSON object.
func wantsObject(dst any) bool {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer {
		return false
	}
	k := t.Elem().Kind()
	return k == reflect.Struct || k == reflect.Map
}

// jsonKind names the JSON type a Go type decodes from, for error messages clients understand.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "base64 string" // how encoding/json carries []byte
		}
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	default:
		return t.String()
	}
}
