// Package keys fills the end-to-end encryption counts of /sync (end-to-end encryption module,
// "Extensions to /sync"): device_one_time_keys_count and device_unused_fallback_key_types of the
// syncing device, on every response.
package keys

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// Users is what the counts need of the user component.
type Users interface {
	KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error)
}

// Options configures the source.
type Options struct {
	DB       *storage.DB
	Users    Users
	Notifier *notifier.Notifier
}

// Counts is the synctypes.Source of the key counts. Its position is that of
// userapi.StreamKeyCounts, which moves when a claim takes a device's keys, so that the owner's
// long-poll wakes.
type Counts struct {
	users Users
	nf    *notifier.Notifier
	start int64 // the stream's position at start-up, before the notifier has heard of it
}

var _ synctypes.Source = (*Counts)(nil)

// New returns the source.
func New(ctx context.Context, opts Options) (*Counts, error) {
	start, err := opts.DB.StreamPosition(ctx, userapi.StreamKeyCounts)
	if err != nil {
		return nil, fmt.Errorf("keys: position of %s: %w", userapi.StreamKeyCounts, err)
	}
	return &Counts{users: opts.Users, nf: opts.Notifier, start: start}, nil
}

// Stream is synctypes.StreamKeyCounts, the name userapi notifies claims under.
func (c *Counts) Stream() string { return synctypes.StreamKeyCounts }

// Position is the latest claim position known.
func (c *Counts) Position(context.Context) (int64, error) {
	if c.nf != nil {
		return max(c.start, c.nf.Latest(userapi.StreamKeyCounts)), nil
	}
	return c.start, nil
}

// Collect sets the device's current counts: they are state, not changes, so every response
// carries them whatever (from, to] is.
func (c *Counts) Collect(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) error {
	if req.Device == "" {
		return nil
	}
	counts, fallbacks, err := c.users.KeyCounts(ctx, req.User, req.Device)
	if err != nil {
		return err
	}
	resp.DeviceOneTimeKeysCount = counts
	resp.DeviceUnusedFallbackKeyTypes = fallbacks
	return nil
}
