// Package synctoken reads and writes the opaque tokens of the client-server API: stream tokens
// (since, next_batch, prev_batch, the at of /members) that hold a position on each stream, and
// topological tokens that hold a point in a room's history for /messages.
package synctoken

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is returned for a token Lattice did not issue.
var ErrInvalid = errors.New("synctoken: invalid token")

// Stream is a position on every stream a client follows. Zero values are the streams' starts.
type Stream struct {
	Rooms int64 // the roomserver's output stream
	// Others holds the positions of the other streams in a fixed order that the sync component
	// defines; older tokens with fewer entries read as position 0 for the missing ones.
	Others []int64
}

// String encodes the token as "s" and the positions joined by "_".
func (s Stream) String() string {
	var b strings.Builder
	b.WriteByte('s')
	b.WriteString(strconv.FormatInt(s.Rooms, 10))
	for _, p := range s.Others {
		b.WriteByte('_')
		b.WriteString(strconv.FormatInt(p, 10))
	}
	return b.String()
}

// ParseStream reads a stream token.
func ParseStream(tok string) (Stream, error) {
	rest, ok := strings.CutPrefix(tok, "s")
	if !ok || rest == "" {
		return Stream{}, ErrInvalid
	}
	parts := strings.Split(rest, "_")
	if len(parts) > 32 {
		return Stream{}, ErrInvalid
	}
	var s Stream
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return Stream{}, ErrInvalid
		}
		if i == 0 {
			s.Rooms = n
		} else {
			s.Others = append(s.Others, n)
		}
	}
	return s, nil
}

// Topo is a point between two events of a room's history, ordered by (depth, stream
// position): the point just after the event at (Depth, Stream). /messages pages backwards from
// it through that event and those before it, forwards through the events after it; the point
// just before an event is (its depth, its stream position - 1).
type Topo struct {
	Depth  int64
	Stream int64
}

// String encodes the token as "t{depth}-{stream}".
func (t Topo) String() string {
	return "t" + strconv.FormatInt(t.Depth, 10) + "-" + strconv.FormatInt(t.Stream, 10)
}

// ParseTopo reads a topological token.
func ParseTopo(tok string) (Topo, error) {
	rest, ok := strings.CutPrefix(tok, "t")
	if !ok {
		return Topo{}, ErrInvalid
	}
	d, p, ok := strings.Cut(rest, "-")
	if !ok {
		return Topo{}, ErrInvalid
	}
	depth, err1 := strconv.ParseInt(d, 10, 64)
	pos, err2 := strconv.ParseInt(p, 10, 64)
	if err1 != nil || err2 != nil || depth < 0 || pos < 0 {
		return Topo{}, ErrInvalid
	}
	return Topo{Depth: depth, Stream: pos}, nil
}

// RoomsPosition returns the output-stream position a stream or topological token stands at.
func RoomsPosition(tok string) (int64, error) {
	if strings.HasPrefix(tok, "t") {
		t, err := ParseTopo(tok)
		return t.Stream, err
	}
	s, err := ParseStream(tok)
	return s.Rooms, err
}
