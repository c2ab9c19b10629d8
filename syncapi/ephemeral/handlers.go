package ephemeral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/userapi"
)

// Receipt and marker types (client-server API, "Receipts", "Read and unread markers").
const (
	typeRead        = "m.read"
	typeReadPrivate = receiptstore.PrivateType
	typeFullyRead   = "m.fully_read"
)

// threadHops is how many relations are followed to find an event's thread, as the spec
// recommends ("Threaded read receipts").
const threadHops = 3

// putTyping answers PUT /rooms/{roomId}/typing/{userId} (client-server API, "Typing
// Notifications").
func (a *API) putTyping(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	if id.UserID(httpapi.Vars(r)["userId"]) != dev.UserID {
		return httpapi.Forbidden("You may only set your own typing state")
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if body.Typing == nil {
		return httpapi.MissingParam("typing is required")
	}
	timeout := DefaultTypingTimeout
	if body.Timeout != nil {
		if *body.Timeout < 0 {
			return httpapi.InvalidParam("timeout must not be negative")
		}
		timeout = time.Duration(min(*body.Timeout, MaxTypingTimeout.Milliseconds())) * time.Millisecond
	}
	if err := a.requireJoined(r.Context(), roomID, dev.UserID); err != nil {
		return err
	}
	if err := a.allow(dev.UserID); err != nil {
		return err
	}
	a.typing.Set(roomID, dev.UserID, *body.Typing, timeout)
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// postReceipt answers POST /rooms/{roomId}/receipt/{receiptType}/{eventId} (client-server API,
// "Receipts"); m.fully_read moves the read marker as /read_markers does.
func (a *API) postReceipt(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	vars := httpapi.Vars(r)
	typ, eventID := vars["receiptType"], id.EventID(vars["eventId"])
	switch typ {
	case typeRead, typeReadPrivate, typeFullyRead:
	default:
		return httpapi.InvalidParam("Unknown receipt type %q", typ)
	}
	if err := checkEventID(string(eventID)); err != nil {
		return err
	}
	threadID, err := receiptThread(r)
	if err != nil {
		return err
	}
	if typ == typeFullyRead && threadID != "" {
		return httpapi.InvalidParam("thread_id does not apply to m.fully_read")
	}
	if err := a.requireJoined(ctx, roomID, dev.UserID); err != nil {
		return err
	}
	ev, err := a.eventInRoom(ctx, roomID, eventID)
	if err != nil {
		return err
	}
	if threadID != "" {
		if err := a.checkThread(ctx, ev, threadID); err != nil {
			return err
		}
	}
	if err := a.allow(dev.UserID); err != nil {
		return err
	}
	if typ == typeFullyRead {
		err = a.setFullyRead(ctx, dev.UserID, roomID, eventID)
	} else {
		err = a.putReceipts(ctx, roomID, dev.UserID, threadID, map[string]id.EventID{typ: eventID})
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// receiptThread reads the receipt body's thread_id: "" when absent (an unthreaded receipt),
// else "main" or a thread root's event ID. The body is optional: some clients send none.
func receiptThread(r *http.Request) (string, error) {
	if r.ContentLength == 0 {
		return "", nil
	}
	var body map[string]any
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return "", err
	}
	v, ok := body["thread_id"]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", httpapi.InvalidParam("thread_id field must be a non-empty string")
	}
	if s != "main" && checkEventID(s) != nil {
		return "", httpapi.InvalidParam("thread_id must be \"main\" or the event ID of a thread root")
	}
	return s, nil
}

// postReadMarkers answers POST /rooms/{roomId}/read_markers (client-server API, "Fully read
// markers"): every event is checked before anything is written.
func (a *API) postReadMarkers(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body struct {
		FullyRead   *string `json:"m.fully_read"`
		Read        *string `json:"m.read"`
		ReadPrivate *string `json:"m.read.private"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	markers := map[string]id.EventID{}
	for typ, v := range map[string]*string{typeFullyRead: body.FullyRead, typeRead: body.Read, typeReadPrivate: body.ReadPrivate} {
		if v == nil {
			continue
		}
		if err := checkEventID(*v); err != nil {
			return httpapi.InvalidParam("%s: %q is not an event ID", typ, *v)
		}
		markers[typ] = id.EventID(*v)
	}
	if err := a.requireJoined(ctx, roomID, dev.UserID); err != nil {
		return err
	}
	for _, eventID := range markers {
		if _, err := a.eventInRoom(ctx, roomID, eventID); err != nil {
			return err
		}
	}
	if err := a.allow(dev.UserID); err != nil {
		return err
	}
	fullyRead, hasFullyRead := markers[typeFullyRead]
	delete(markers, typeFullyRead)
	if err := a.putReceipts(ctx, roomID, dev.UserID, "", markers); err != nil {
		return err
	}
	if hasFullyRead {
		if err := a.setFullyRead(ctx, dev.UserID, roomID, fullyRead); err != nil {
			return err
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// eventInRoom returns an event of the room, 404 if the server knows no such event there.
func (a *API) eventInRoom(ctx context.Context, roomID id.RoomID, eventID id.EventID) (*pdu.Event, error) {
	ev, err := a.rooms.Event(ctx, eventID)
	if err != nil {
		return nil, fmt.Errorf("load event %s: %w", eventID, err)
	}
	if ev == nil || ev.RoomID() != roomID {
		return nil, httpapi.NotFound("Event %s is not in this room", eventID)
	}
	return ev, nil
}

// checkThread answers 400 unless the event belongs to the thread a receipt names: "main" takes
// events outside threads, a root's ID takes the root and the events of its thread.
func (a *API) checkThread(ctx context.Context, ev *pdu.Event, threadID string) error {
	if threadID == string(ev.EventID()) {
		return nil // a thread's root, read in the thread's view
	}
	in, err := a.threadOf(ctx, ev)
	if err != nil {
		return err
	}
	if in != threadID {
		return httpapi.InvalidParam("Event %s is not in thread %s", ev.EventID(), threadID)
	}
	return nil
}

// threadOf returns the root of the thread an event is in, or "main" (client-server API,
// "Threaded read receipts"): an event is in a thread when it has an m.thread relation, or when
// one of the events its relations lead to, within threadHops, has one.
func (a *API) threadOf(ctx context.Context, ev *pdu.Event) (string, error) {
	for hop := 0; ; hop++ {
		relType, target := relation(ev.Content())
		if relType == "m.thread" {
			return target, nil
		}
		if target == "" || hop == threadHops {
			return "main", nil
		}
		parent, err := a.rooms.Event(ctx, id.EventID(target))
		if err != nil {
			return "", fmt.Errorf("load event %s: %w", target, err)
		}
		if parent == nil || parent.RoomID() != ev.RoomID() {
			return "main", nil
		}
		ev = parent
	}
}

// relation reads content["m.relates_to"] (client-server API, "Forming relationships between
// events").
func relation(content json.RawMessage) (relType, target string) {
	var c struct {
		RelatesTo *struct {
			RelType string `json:"rel_type"`
			EventID string `json:"event_id"`
		} `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || c.RelatesTo == nil || c.RelatesTo.RelType == "" || !strings.HasPrefix(c.RelatesTo.EventID, "$") {
		return "", ""
	}
	return c.RelatesTo.RelType, c.RelatesTo.EventID
}

// putReceipts stores the user's receipts (type → event) in the room, stamped now.
func (a *API) putReceipts(ctx context.Context, roomID id.RoomID, user id.UserID, threadID string, byType map[string]id.EventID) error {
	if len(byType) == 0 {
		return nil
	}
	ts := a.now().UnixMilli()
	rs := make([]receiptstore.Receipt, 0, len(byType))
	for typ, eventID := range byType {
		pos, err := a.rooms.StreamPosition(ctx, eventID)
		if err != nil {
			return fmt.Errorf("position of %s: %w", eventID, err)
		}
		rs = append(rs, receiptstore.Receipt{RoomID: string(roomID), UserID: string(user), Type: typ, ThreadID: threadID,
			EventID: string(eventID), EventPos: pos, TS: ts})
	}
	return a.receipts.Put(ctx, rs)
}

// setFullyRead moves the user's m.fully_read room account data to the event, unless it already
// marks a later one: like receipts, the marker only moves forward.
func (a *API) setFullyRead(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID) error {
	cur, err := a.users.GetAccountData(ctx, user, roomID, typeFullyRead)
	if err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return fmt.Errorf("read marker of %s: %w", user, err)
	}
	var c struct {
		EventID id.EventID `json:"event_id"`
	}
	if err == nil && json.Unmarshal(cur, &c) == nil && c.EventID != "" {
		if c.EventID == eventID {
			return nil
		}
		curPos, err := a.rooms.StreamPosition(ctx, c.EventID)
		if err != nil {
			return fmt.Errorf("position of %s: %w", c.EventID, err)
		}
		newPos, err := a.rooms.StreamPosition(ctx, eventID)
		if err != nil {
			return fmt.Errorf("position of %s: %w", eventID, err)
		}
		if curPos > 0 && newPos > 0 && curPos > newPos {
			return nil
		}
	}
	content, err := json.Marshal(map[string]id.EventID{"event_id": eventID})
	if err != nil {
		return err
	}
	return a.users.SetAccountData(ctx, user, roomID, typeFullyRead, content)
}
