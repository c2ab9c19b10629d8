package synctoken

import (
	"errors"
	"testing"
)

func TestStreamRoundTrip(t *testing.T) {
	for _, s := range []Stream{{}, {Rooms: 42}, {Rooms: 7, Others: []int64{0, 3, 9}}} {
		got, err := ParseStream(s.String())
		if err != nil || got.String() != s.String() {
			t.Errorf("%v: got %v, %v", s, got, err)
		}
	}
	for _, bad := range []string{"", "s", "x1", "s-1", "s1_a", "s1__2", "t1-2"} {
		if _, err := ParseStream(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseStream(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestTopoRoundTrip(t *testing.T) {
	tok := Topo{Depth: 12, Stream: 345}
	got, err := ParseTopo(tok.String())
	if err != nil || got != tok {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "t", "t1", "t1-", "t-1-2", "ta-b", "s1"} {
		if _, err := ParseTopo(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTopo(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	for tok, want := range map[string]int64{"s17_2": 17, "t3-18": 18} {
		if pos, err := RoomsPosition(tok); err != nil || pos != want {
			t.Errorf("RoomsPosition(%q) = %d, %v", tok, pos, err)
		}
	}
}
