package keys

import (
	"context"
	"errors"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// TestStreamName checks the source's stream is the one userapi notifies claims under, and is in
// the sync token (a source whose stream is not in TokenOrder is never called).
func TestStreamName(t *testing.T) {
	if synctypes.StreamKeyCounts != userapi.StreamKeyCounts {
		t.Errorf("synctypes.StreamKeyCounts %q != userapi.StreamKeyCounts %q", synctypes.StreamKeyCounts, userapi.StreamKeyCounts)
	}
	if !slices.Contains(synctypes.TokenOrder, synctypes.StreamKeyCounts) {
		t.Error("key counts stream not in the sync token")
	}
}

// fakeUsers answers KeyCounts from a table.
type fakeUsers map[id.DeviceID]int

func (f fakeUsers) KeyCounts(_ context.Context, _ id.UserID, d id.DeviceID) (map[string]int, []string, error) {
	if d == "BROKEN" {
		return nil, nil, errors.New("broken")
	}
	return map[string]int{"signed_curve25519": f[d]}, []string{"signed_curve25519"}, nil
}

// TestCollect checks that every response carries the syncing device's counts.
func TestCollect(t *testing.T) {
	c := &Counts{users: fakeUsers{"A": 3}}
	resp := synctypes.NewResponse()
	if err := c.Collect(t.Context(), &synctypes.Request{User: "@a:x", Device: "A"}, 5, 5, resp); err != nil {
		t.Fatal(err)
	}
	if resp.DeviceOneTimeKeysCount["signed_curve25519"] != 3 || len(resp.DeviceUnusedFallbackKeyTypes) != 1 {
		t.Errorf("got %v %v", resp.DeviceOneTimeKeysCount, resp.DeviceUnusedFallbackKeyTypes)
	}
	if err := c.Collect(t.Context(), &synctypes.Request{User: "@a:x", Device: "BROKEN"}, 0, 0, resp); err == nil {
		t.Error("an error was swallowed")
	}
}

// TestDeviceListsPosition reads the device_lists entry of sync tokens, old and new.
func TestDeviceListsPosition(t *testing.T) {
	for tok, want := range map[string]int64{"s5_1_2_3_4_5_6_7": 6, "s5_1_2": 0, "s9": 0} {
		if got, err := deviceListsPosition(tok); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", tok, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "s1_a", "t1"} {
		if _, err := deviceListsPosition(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
