package mediaapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/latticehq/lattice/internal/httpapi"
)

func TestValidMediaID(t *testing.T) {
	for _, id := range []string{"a", "AQwafuaFswefuhsfAFAgsw", "abc-DEF_123", strings.Repeat("x", maxMediaIDLength), newMediaID()} {
		if !validMediaID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"", "..", "../../x", "a/b", "a.b", "a%2e", "a b", "é", "a\x00", strings.Repeat("x", maxMediaIDLength+1), "a\\b"} {
		if validMediaID(id) {
			t.Errorf("%q accepted", id)
		}
	}
	if id := newMediaID(); len(id) < 24 || id == newMediaID() {
		t.Fatalf("media ID %q is short or not random", id)
	}
}

func TestParseMediaRef(t *testing.T) {
	for _, tc := range []struct {
		server, id string
		ok         bool
	}{
		{"example.org", "abc", true},
		{"example.org:8448", "abc", true},
		{"127.0.0.1", "abc", true},
		{"[::1]:8008", "abc", true},
		{"", "abc", false},
		{"example.org", "", false},
		{"exa mple.org", "abc", false},
		{"example.org/..", "abc", false},
		{"example.org", "../../etc/passwd", false},
		{"example.org", "..%2f..%2fx", false},
	} {
		_, err := parseMediaRef(tc.server, tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("parseMediaRef(%q, %q) = %v", tc.server, tc.id, err)
		}
	}
}

// FuzzParseMediaPath feeds arbitrary {serverName} and {mediaId} path segments, as the router
// hands them over percent-encoded, through the decoding and the check. Whatever is accepted
// must be a plain media ID and a server name that cannot reach outside the media folder.
func FuzzParseMediaPath(f *testing.F) {
	for _, seed := range [][2]string{
		{"localhost", "abcDEF_-123"},
		{"localhost", "..%2F..%2Fx"},
		{"localhost", "%2e%2e%2f%2e%2e%2fx"},
		{"..", "x"},
		{"localhost%2F..", "x"},
		{"[::1]:8448", "a"},
		{"localhost", "%00"},
		{"localhost", "x%252e"},
		{"example.org", "%C0%AE%C0%AE"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, rawServer, rawID string) {
		server, err1 := url.PathUnescape(rawServer)
		id, err2 := url.PathUnescape(rawID)
		if err1 != nil || err2 != nil {
			return // net/http refuses malformed escapes before routing
		}
		ref, err := parseMediaRef(server, id)
		if err != nil {
			if e, ok := err.(*httpapi.Error); !ok || e.Status != http.StatusNotFound || e.Code != "M_NOT_FOUND" {
				t.Fatalf("refusal of %q %q is %v, want 404 M_NOT_FOUND", server, id, err)
			}
			return
		}
		for _, c := range ref.id {
			if !(c < unicode.MaxASCII && (unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_' || c == '-')) {
				t.Fatalf("accepted media ID %q", ref.id)
			}
		}
		if strings.ContainsAny(ref.server, "/\\%?#") || ref.server == "" {
			t.Fatalf("accepted server name %q", ref.server)
		}
		if ref.mxc() != "mxc://"+server+"/"+id {
			t.Fatalf("mxc of %q %q is %q", server, id, ref.mxc())
		}
	})
}
