package push

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/pushstore"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/storage/syncstore"
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
		p.badgeDue(id.UserID(r.UserID))
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
	var want []string
	for r := range resp.Rooms.Join {
		want = append(want, string(r))
	}
	joined, err := p.joinedRooms(ctx, req.User, want...)
	if err != nil {
		return err
	}
	rooms := make(map[string]int64, len(resp.Rooms.Join))
	for r := range resp.Rooms.Join {
		if start, ok := joined[string(r)]; ok {
			rooms[string(r)] = start
		}
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

// joinedRooms returns the rooms the user is joined to now, each with the position of the join
// that began the current membership: the user's notifications of the room come after it.
// Given a few rooms, it reads only those (an incremental sync); otherwise every room at once.
func (p *Push) joinedRooms(ctx context.Context, user id.UserID, only ...string) (map[string]int64, error) {
	var hist map[string][]syncstore.Membership
	if len(only) > 0 && len(only) <= 20 {
		hist = make(map[string][]syncstore.Membership, len(only))
		for _, room := range only {
			h, err := p.events.Memberships(ctx, p.db, room, string(user))
			if err != nil {
				return nil, err
			}
			hist[room] = h
		}
	} else {
		var err error
		if hist, err = p.events.UserMemberships(ctx, p.db, string(user)); err != nil {
			return nil, err
		}
	}
	out := make(map[string]int64, len(hist))
	for room, h := range hist {
		i := len(h) - 1
		if i < 0 || h[i].Membership != "join" {
			continue
		}
		for i > 0 && h[i-1].Membership == "join" { // profile changes keep the membership
			i--
		}
		out[room] = h[i].Pos
	}
	return out, nil
}

// unreadTotal is the number of the user's unread notifications in every joined room.
func (p *Push) unreadTotal(ctx context.Context, user id.UserID) (int, error) {
	rooms, err := p.joinedRooms(ctx, user)
	if err != nil {
		return 0, err
	}
	counts, err := p.store.Unread(ctx, string(user), rooms)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, threads := range counts {
		for _, c := range threads {
			n += c.Notifications
		}
	}
	return n, nil
}

// badgeDue notes that a receipt may have changed the user's unread count; the sender sends
// the count once the receipt has committed (a receipt that did not commit costs one needless
// update, which is harmless).
func (p *Push) badgeDue(user id.UserID) {
	p.badgeMu.Lock()
	defer p.badgeMu.Unlock()
	if p.badges == nil {
		p.badges = map[id.UserID]bool{}
	}
	p.badges[user] = true
}

// takeBadges returns and forgets the users due a badge update.
func (p *Push) takeBadges() []id.UserID {
	p.badgeMu.Lock()
	defer p.badgeMu.Unlock()
	out := make([]id.UserID, 0, len(p.badges))
	for u := range p.badges {
		out = append(out, u)
	}
	p.badges = nil
	return out
}
