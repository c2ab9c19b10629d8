package roomserver

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// LatestEvent returns the ID of the room's newest event: its deepest forward extremity, the
// latest of those committed here when depths tie. Room upgrades name it as the predecessor's
// event_id (client-server API, "Room Upgrades"). It reads the cached room only.
func (r *Roomserver) LatestEvent(ctx context.Context, roomID id.RoomID) (id.EventID, error) {
	rc, err := r.readRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var latest id.EventID
	depth := int64(-1)
	for _, ev := range rc.extremities {
		// Extremities are kept in commit order, so >= keeps the later of equal depths.
		if ev.Depth() >= depth {
			latest, depth = ev.EventID(), ev.Depth()
		}
	}
	return latest, nil
}
