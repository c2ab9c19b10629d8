package mediaapi

import (
	"maps"
	"strings"
	"testing"
)

func TestParseOpenGraph(t *testing.T) {
	for _, tc := range []struct {
		name, html string
		want       map[string]string
	}{
		{"og", `<html><head><title>T</title><meta property="og:title" content="OG &amp; title">
			<meta property="OG:Description" content=" lots   of
			space "><meta property="og:title" content="second"><meta name="description" content="D"></head></html>`,
			map[string]string{"og:title": "OG & title", "og:description": "lots of space"}},
		{"fallbacks", `<title>  The
			title </title><meta name="description" content="Described">`,
			map[string]string{"og:title": "The title", "og:description": "Described"}},
		{"og in name", `<meta name="og:site_name" content="Site"><meta property="og:image" content="/a.png">`,
			map[string]string{"og:site_name": "Site", "og:image": "/a.png"}},
		{"broken", `<html><head><title>Unclosed<meta property="og:type" content="x"`, map[string]string{"og:title": `Unclosed<meta property="og:type" content="x"`}},
		{"empty", ``, map[string]string{}},
		{"title in body svg ignored after first", `<title>One</title><svg><title>Two</title></svg>`, map[string]string{"og:title": "One"}},
	} {
		if got := parseOpenGraph(strings.NewReader(tc.html)); !maps.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	long := parseOpenGraph(strings.NewReader(`<meta property="og:description" content="` + strings.Repeat("é", 2000) + `">`))
	if d := long["og:description"]; len(d) > maxOGValue || !strings.HasPrefix(d, "éé") || strings.ContainsRune(d, '\uFFFD') {
		t.Fatalf("long value cut to %d bytes: %q", len(d), d[len(d)-4:])
	}
	var many strings.Builder
	for i := range 200 {
		many.WriteString(`<meta property="og:k` + strings.Repeat("x", i) + `" content="v">`)
	}
	if n := len(parseOpenGraph(strings.NewReader(many.String()))); n > maxOGKeys {
		t.Fatalf("%d keys kept", n)
	}
}
