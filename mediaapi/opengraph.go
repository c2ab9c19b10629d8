package mediaapi

import (
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// maxOGValue bounds each value taken from a page, in bytes.
const maxOGValue = 1000

// maxOGKeys bounds the keys taken from a page.
const maxOGKeys = 50

// parseOpenGraph reads the OpenGraph properties (<meta property="og:…" content="…">, see
// ogp.me) of an HTML page, falling back to its <title> for og:title and its description meta
// tag for og:description. The first value of each property wins. Only the tokenizer runs, so
// a page that is not well-formed yields what could be read of it.
func parseOpenGraph(r io.Reader) map[string]string {
	og := map[string]string{}
	var title, description string
	inTitle := false
	z := html.NewTokenizer(r)
	for {
		switch z.Next() {
		case html.ErrorToken:
			if og["og:title"] == "" && title != "" {
				og["og:title"] = title
			}
			if og["og:description"] == "" && description != "" {
				og["og:description"] = description
			}
			return og
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "title":
				inTitle = title == ""
			case "meta":
				if !hasAttr {
					continue
				}
				attrs := map[string]string{}
				for more := true; more; {
					var k, v []byte
					k, v, more = z.TagAttr()
					attrs[string(k)] = string(v)
				}
				prop := attrs["property"]
				if prop == "" {
					prop = attrs["name"]
				}
				prop = strings.ToLower(strings.TrimSpace(prop))
				content, ok := attrs["content"]
				if !ok {
					continue
				}
				content = clip(content)
				switch {
				case strings.HasPrefix(prop, "og:") && len(prop) <= 64:
					if _, seen := og[prop]; !seen && len(og) < maxOGKeys {
						og[prop] = content
					}
				case prop == "description" && description == "":
					description = content
				}
			}
		case html.TextToken:
			if inTitle {
				title = clip(string(z.Text()))
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "title" {
				inTitle = false
			}
		}
	}
}

// clip trims space, folds runs of white space and cuts a value to maxOGValue bytes at a rune
// boundary.
func clip(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " ")
	if len(s) <= maxOGValue {
		return s
	}
	cut := maxOGValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
