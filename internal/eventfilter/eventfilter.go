// Package eventfilter holds the matching rules of the client-server API's filters that more
// than one component applies (client-server API, "Filtering").
package eventfilter

import "strings"

// TypeMatches matches an event type against a filter's type pattern, where "*" stands for any
// run of characters and nothing else is special.
func TypeMatches(pattern, typ string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == typ
	}
	rest, ok := strings.CutPrefix(typ, parts[0])
	if !ok {
		return false
	}
	// Leftmost matches of the middle parts leave the most room for the rest.
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	return strings.HasSuffix(rest, parts[len(parts)-1])
}

// AnyTypeMatches reports whether typ matches one of the patterns.
func AnyTypeMatches(patterns []string, typ string) bool {
	for _, p := range patterns {
		if TypeMatches(p, typ) {
			return true
		}
	}
	return false
}
