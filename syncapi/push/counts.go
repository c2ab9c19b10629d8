package push

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/pushstore"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

// mainThread is the thread_id of a receipt for the main timeline ("Threaded read receipts").
const mainThread = "main"

func (p *Push) now() int64 { return time.Now().UnixMilli() }

// MarkReceipts marks notifications read for receipts being stored, in the receipts' own
// transaction ("Marking notifications as read"): m.read and m.read.private alike, an
// unthreaded receipt for every thread, a threaded one for its thread only. A receipt never
// moves backwards (the receipts store keeps the later one), so read stays read.
func (p *Push) MarkReceipts(ctx context.Context, tx *storage.Tx, rs []receiptstore.Receipt) error {
	for _, r := range rs {
		if (r.Type != "m.read" && r.Type != receiptstore.PrivateType) || r.EventPos <= 0 || !p.local(id.UserID(r.UserID)) {
			continue
		}
		thread := r.ThreadID
		switch thread {
		case "":
			thread = pushstore.AllThreads
		case mainThread:
			thread = ""
		}
		if err := p.store.MarkRead(ctx, tx, r.UserID, r.RoomID, thread, r.EventPos); err != nil {
			return err
		}
	}
	return nil
}

// Fill puts the user's unread notification counts into every joined room of the response
// (client-server API, "Receiving notifications"). With unread_thread_notifications in the
// timeline filter, unread_notifications counts the main timeline and each thread has its own
// counts; otherwise unread_notifications counts the whole room.
func (p *Push) Fill(ctx context.Context, req *synctypes.Request, resp *synctypes.Response) error {
	if len(resp.Rooms.Join) == 0 {
		return nil
	}
	rooms := make([]string, 0, len(resp.Rooms.Join))
	for r := range resp.Rooms.Join {
		rooms = append(rooms, string(r))
	}
	counts, err := p.store.Unread(ctx, string(req.User), rooms)
	if err != nil {
		return err
	}
	byThread := req.Filter != nil && req.Filter.Room != nil && req.Filter.Room.Timeline != nil &&
		req.Filter.Room.Timeline.UnreadThreadNotifications
	for room, jr := range resp.Rooms.Join {
		var total synctypes.UnreadNotifications
		for thread, c := range counts[string(room)] {
			n := synctypes.UnreadNotifications{NotificationCount: c.Notifications, HighlightCount: c.Highlights}
			if byThread && thread != "" {
				jr.UnreadThreadNotifications[thread] = n
				continue
			}
			total.NotificationCount += n.NotificationCount
			total.HighlightCount += n.HighlightCount
		}
		jr.UnreadNotifications = total
	}
	return nil
}
