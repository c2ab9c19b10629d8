package push

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/safehttp"
	"github.com/latticehq/lattice/storage/pushstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// deliveryBatch is how many notifications a pusher reads from its cursor at a time.
const deliveryBatch = 20

// pusherID names one pusher.
type pusherID struct {
	user    id.UserID
	appID   string
	pushKey string
}

// sender delivers notifications to push gateways: one worker per pusher, each reading the
// user's notifications after the pusher's durable cursor and moving the cursor only once the
// gateway has taken a notification, so a crash or restart resends rather than loses. A failed
// delivery is retried after a pause that doubles from push.retry_initial up to
// push.retry_max; later notifications wait, so a gateway sees them in order.
type sender struct {
	p      *Push
	client *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	workers map[pusherID]*workerSlot
}

func newSender(p *Push, roots *x509.CertPool) *sender {
	return &sender{p: p, workers: map[pusherID]*workerSlot{},
		client: safehttp.NewClient(safehttp.Options{AllowPrivate: p.cfg.AllowPrivateAddresses, Timeout: p.cfg.Timeout,
			MaxRedirects: -1, RootCAs: roots})}
}

func (s *sender) start() {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow()
	}()
}

func (s *sender) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
	s.cancel = nil
}

// follow starts a worker for every pusher (each resumes from its cursor), then wakes the
// pushers of the users whom each new batch of timeline events notified, and starts the workers
// of pushers as they are set.
func (s *sender) follow() {
	ctx := s.ctx
	var seen int64
	started := false
	var pusherUsers []string
	known := map[pusherID]bool{} // pushers whose worker has been kicked once
	var loadMu sync.Mutex        // both followers load the pushers
	loadPushers := func(ctx context.Context) error {
		loadMu.Lock()
		defer loadMu.Unlock()
		all, err := s.p.users.AllPushers(ctx)
		if err != nil {
			return err
		}
		users := map[string]bool{}
		seenNow := make(map[pusherID]bool, len(all))
		for _, pu := range all {
			pid := pusherID{pu.UserID, pu.AppID, pu.PushKey}
			seenNow[pid] = true
			if !known[pid] { // a new pusher, or every pusher at start: resume from its cursor
				s.kick(pid)
			}
			users[string(pu.UserID)] = true
		}
		list := make([]string, 0, len(users))
		for u := range users {
			list = append(list, u)
		}
		s.mu.Lock()
		pusherUsers, known = list, seenNow
		s.mu.Unlock()
		return nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.p.nf.Follow(ctx, s.p.log, userapi.StreamPushers, userapi.PushersKey, func(ctx context.Context) (int64, bool, error) {
			pos := s.p.nf.Latest(userapi.StreamPushers)
			return pos, false, loadPushers(ctx)
		})
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Read receipts committed: the users whose counts they changed get a badge update.
		s.p.nf.Follow(ctx, s.p.log, synctypes.StreamReceipts, synctypes.ReceiptsKey, func(ctx context.Context) (int64, bool, error) {
			pos := s.p.nf.Latest(synctypes.StreamReceipts)
			for _, u := range s.p.takeBadges() {
				ps, err := s.p.users.Pushers(ctx, u)
				if err != nil {
					return 0, false, err
				}
				for _, pu := range ps {
					s.kick(pusherID{pu.UserID, pu.AppID, pu.PushKey}, true)
				}
			}
			return pos, false, nil
		})
	}()
	s.p.nf.Follow(ctx, s.p.log, synctypes.StreamTimeline, synctypes.TimelineKey, func(ctx context.Context) (int64, bool, error) {
		timeline := s.p.nf.Latest(synctypes.StreamTimeline)
		if !started {
			latest, err := s.p.store.LatestPos(ctx)
			if err != nil {
				return 0, false, err
			}
			seen, started = latest, true
			return timeline, false, loadPushers(ctx)
		}
		rooms, users, reached, err := s.p.store.NotifiedSince(ctx, seen)
		if err != nil {
			return 0, false, err
		}
		s.mu.Lock()
		candidates := pusherUsers
		s.mu.Unlock()
		// Members (present or past: a kick only makes a worker look) with pushers of the rooms
		// whose events notified members with the default rules.
		members, err := s.p.events.MembersAmong(ctx, s.p.db, rooms, candidates)
		if err != nil {
			return 0, false, err
		}
		for _, u := range append(users, members...) {
			ps, err := s.p.users.Pushers(ctx, id.UserID(u))
			if err != nil {
				return 0, false, err
			}
			for _, pu := range ps {
				s.kick(pusherID{pu.UserID, pu.AppID, pu.PushKey})
			}
		}
		seen = reached
		return timeline, false, nil
	})
}

// workerSlot is how a running worker is woken: kick to look for notifications, badge (set
// before the kick) to send the user's unread count as well.
type workerSlot struct {
	kick  chan struct{}
	badge atomic.Bool
}

// kick wakes the pusher's worker, starting it if it is not running; with badge, the worker
// also sends the user's unread count.
func (s *sender) kick(pid pusherID, badge ...bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	slot, ok := s.workers[pid]
	if !ok {
		slot = &workerSlot{kick: make(chan struct{}, 1)}
		s.workers[pid] = slot
		s.wg.Add(1)
		go s.run(pid, slot)
	}
	if len(badge) > 0 && badge[0] {
		slot.badge.Store(true)
	}
	select {
	case slot.kick <- struct{}{}:
	default: // already due to look
	}
}

// run is one pusher's worker.
func (s *sender) run(pid pusherID, slot *workerSlot) {
	defer s.wg.Done()
	w := &worker{s: s, id: pid}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-slot.kick:
		}
		for {
			res := w.deliverPending(s.ctx)
			if res.gone {
				s.mu.Lock()
				if s.workers[pid] == slot {
					delete(s.workers, pid)
				}
				s.mu.Unlock()
				return
			}
			if res.retry > 0 {
				select {
				case <-s.ctx.Done():
					return
				case <-time.After(res.retry):
				}
				continue
			}
			if !res.more {
				break
			}
		}
		if slot.badge.Swap(false) {
			w.sendBadge(s.ctx)
		}
	}
}

// sendBadge sends the user's unread count alone, after a read receipt changed it, so that the
// phone's badge follows what was read elsewhere (push gateway API: "the counts may be sent ...
// by themselves"). It is sent once, without retries: the next notification carries the count
// anyway.
func (w *worker) sendBadge(ctx context.Context) {
	p := w.s.p
	pusher, err := w.pusher(ctx)
	if err != nil || pusher == nil {
		return
	}
	unread, err := p.unreadTotal(ctx, w.id.user)
	if err != nil {
		p.log.Warn("push: unread count", "user", w.id.user, "error", err)
		return
	}
	data := map[string]json.RawMessage{}
	json.Unmarshal(pusher.Data, &data)
	delete(data, "url")
	// The count is sent even when it is zero: that is what clears the badge.
	body, err := json.Marshal(map[string]any{"notification": map[string]any{
		"prio":   "low",
		"counts": map[string]int{"unread": unread},
		"devices": []device{{AppID: pusher.AppID, PushKey: pusher.PushKey, PushKeyTS: pusher.PushKeyTS / 1000,
			Data: data, Tweaks: map[string]json.RawMessage{}}},
	}})
	if err != nil {
		return
	}
	if o, err := w.s.post(ctx, pusher, body); o == rejected {
		if err := p.users.DeletePusher(ctx, w.id.user, w.id.appID, w.id.pushKey); err != nil {
			p.log.Warn("push: delete rejected pusher", "user", w.id.user, "error", err)
		}
	} else if err != nil && ctx.Err() == nil {
		p.log.Info("push: badge update not delivered", "user", w.id.user, "app_id", w.id.appID, "error", err)
	}
}

// worker is the state of one pusher's delivery.
type worker struct {
	s            *sender
	id           pusherID
	failures     int
	failingSince time.Time
}

type deliveryResult struct {
	gone  bool          // the pusher no longer exists: stop
	retry time.Duration // a delivery failed: try again after this
	more  bool          // a full batch was delivered: read on
}

// outcome of one request to a gateway.
type outcome int

const (
	delivered outcome = iota
	rejected          // the gateway rejected the pushkey: delete the pusher
	dropped           // the gateway refused this notification for good
	failed            // try again later
)

func (w *worker) deliverPending(ctx context.Context) deliveryResult {
	p := w.s.p
	pusher, err := w.pusher(ctx)
	if err != nil {
		return w.backoff(err)
	}
	if pusher == nil {
		if err := p.store.DeleteCursor(ctx, string(w.id.user), w.id.appID, w.id.pushKey); err != nil && ctx.Err() == nil {
			p.log.Warn("push: forget cursor of deleted pusher", "user", w.id.user, "error", err)
		}
		return deliveryResult{gone: true}
	}
	cursor, ok, err := p.store.Cursor(ctx, string(w.id.user), w.id.appID, w.id.pushKey)
	if err != nil {
		return w.backoff(err)
	}
	if !ok {
		// A new pusher starts with what comes after it was set.
		if cursor, err = p.store.PosBefore(ctx, string(w.id.user), pusher.CreatedTS); err != nil {
			return w.backoff(err)
		}
	}
	rooms, err := p.joinedRooms(ctx, w.id.user)
	if err != nil {
		return w.backoff(err)
	}
	ns, err := p.store.After(ctx, string(w.id.user), rooms, cursor, pusher.CreatedTS, deliveryBatch)
	if err != nil {
		return w.backoff(err)
	}
	for _, n := range ns {
		switch o, err := w.s.send(ctx, pusher, n); o {
		case rejected:
			p.log.Info("push: gateway rejected pushkey; deleting the pusher", "user", w.id.user, "app_id", w.id.appID)
			if err := p.users.DeletePusher(ctx, w.id.user, w.id.appID, w.id.pushKey); err != nil {
				return w.backoff(err)
			}
			return deliveryResult{gone: true}
		case failed:
			if p.cfg.GiveUpAfter > 0 && !w.failingSince.IsZero() && time.Since(w.failingSince) > p.cfg.GiveUpAfter {
				p.log.Warn("push: giving up on a notification", "user", w.id.user, "app_id", w.id.appID, "event_id", n.EventID, "error", err)
			} else {
				return w.backoff(err)
			}
		case dropped:
			p.log.Warn("push: gateway refused a notification", "user", w.id.user, "app_id", w.id.appID, "event_id", n.EventID, "error", err)
		}
		w.failures, w.failingSince = 0, time.Time{}
		if err := p.store.SetCursor(ctx, string(w.id.user), w.id.appID, w.id.pushKey, n.EventPos); err != nil {
			return w.backoff(err)
		}
	}
	return deliveryResult{more: len(ns) == deliveryBatch}
}

// backoff records a failure and returns when to try again.
func (w *worker) backoff(err error) deliveryResult {
	cfg := w.s.p.cfg
	if w.failingSince.IsZero() {
		w.failingSince = time.Now()
	}
	wait := cfg.RetryInitial << min(w.failures, 30)
	if wait <= 0 || wait > cfg.RetryMax {
		wait = cfg.RetryMax
	}
	w.failures++
	if w.s.ctx.Err() == nil {
		w.s.p.log.Warn("push: delivery failed", "user", w.id.user, "app_id", w.id.appID, "retry_in", wait, "error", err)
	}
	return deliveryResult{retry: wait}
}

// pusher reads the pusher afresh, nil when it was deleted.
func (w *worker) pusher(ctx context.Context) (*userapi.Pusher, error) {
	ps, err := w.s.p.users.Pushers(ctx, w.id.user)
	if err != nil {
		return nil, err
	}
	for i := range ps {
		if ps[i].AppID == w.id.appID && ps[i].PushKey == w.id.pushKey && ps[i].Kind == "http" {
			return &ps[i], nil
		}
	}
	return nil, nil
}

// notifyRequest is the body of POST /_matrix/push/v1/notify (push gateway API).
type notifyRequest struct {
	Notification notification `json:"notification"`
}

type notification struct {
	EventID string `json:"event_id,omitempty"`
	// ID repeats EventID under the name push gateways written before the spec named it.
	ID                string `json:"id,omitempty"`
	RoomID            string `json:"room_id,omitempty"`
	Type              string `json:"type,omitempty"`
	Sender            string `json:"sender,omitempty"`
	SenderDisplayName string `json:"sender_display_name,omitempty"`
	RoomName          string `json:"room_name,omitempty"`
	RoomAlias         string `json:"room_alias,omitempty"`
	UserIsTarget      bool   `json:"user_is_target,omitempty"`
	// Membership is content.membership of a member event, as gateways written for other
	// servers read it.
	Membership string          `json:"membership,omitempty"`
	Prio       string          `json:"prio"`
	Content    json.RawMessage `json:"content,omitempty"`
	Counts     map[string]int  `json:"counts"`
	Devices    []device        `json:"devices"`
}

type device struct {
	AppID     string                     `json:"app_id"`
	PushKey   string                     `json:"pushkey"`
	PushKeyTS int64                      `json:"pushkey_ts"`
	Data      map[string]json.RawMessage `json:"data"`
	Tweaks    map[string]json.RawMessage `json:"tweaks"`
}

// send makes one notify request for notification n to the pusher's gateway.
func (s *sender) send(ctx context.Context, pu *userapi.Pusher, n pushstore.Notification) (outcome, error) {
	body, err := s.notifyBody(ctx, pu, n)
	if err != nil {
		return failed, err
	}
	return s.post(ctx, pu, body)
}

// post sends one notify request to the pusher's gateway.
func (s *sender) post(ctx context.Context, pu *userapi.Pusher, body []byte) (outcome, error) {
	url := pu.ParsedData().URL
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return dropped, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if errors.Is(err, safehttp.ErrRefused) {
		return dropped, err
	}
	if err != nil {
		return failed, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return failed, fmt.Errorf("gateway answered %s", resp.Status)
	case resp.StatusCode >= 300:
		return dropped, fmt.Errorf("gateway answered %s", resp.Status)
	}
	var answer struct {
		Rejected []string `json:"rejected"`
	}
	json.Unmarshal(raw, &answer)
	if slices.Contains(answer.Rejected, pu.PushKey) {
		return rejected, nil
	}
	return delivered, nil
}

// notifyBody builds the notify request: the event's IDs and the badge count always, and with
// the default format (not event_id_only) its type, sender, content and the room's and sender's
// names (push gateway API, "POST /_matrix/push/v1/notify").
func (s *sender) notifyBody(ctx context.Context, pu *userapi.Pusher, n pushstore.Notification) ([]byte, error) {
	p := s.p
	var actions []userapi.PushAction
	if err := json.Unmarshal(n.Actions, &actions); err != nil {
		return nil, fmt.Errorf("actions of %s: %w", n.EventID, err)
	}
	out := userapi.OutcomeOf(actions)
	tweaks := out.Tweaks
	if tweaks == nil {
		tweaks = map[string]json.RawMessage{}
	}
	prio := "low"
	if _, sound := tweaks["sound"]; sound || out.Highlight {
		prio = "high"
	}
	data := map[string]json.RawMessage{}
	json.Unmarshal(pu.Data, &data)
	delete(data, "url") // "minus the url key"
	unread, err := p.unreadTotal(ctx, pu.UserID)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	if unread > 0 {
		counts["unread"] = unread
	}
	note := notification{EventID: n.EventID, ID: n.EventID, RoomID: n.RoomID, Prio: prio, Counts: counts,
		Devices: []device{{AppID: pu.AppID, PushKey: pu.PushKey, PushKeyTS: pu.PushKeyTS / 1000, Data: data, Tweaks: tweaks}}}
	if pu.ParsedData().Format != "event_id_only" {
		if err := s.describe(ctx, pu.UserID, n, &note); err != nil {
			return nil, err
		}
	}
	return json.Marshal(notifyRequest{Notification: note})
}

// describe adds the event's type, sender and content and the room's and sender's names.
func (s *sender) describe(ctx context.Context, user id.UserID, n pushstore.Notification, note *notification) error {
	p := s.p
	ev, err := p.events.EventByID(ctx, p.db, n.EventID)
	if err != nil || ev == nil {
		return err
	}
	var e struct {
		Content  json.RawMessage `json:"content"`
		StateKey *string         `json:"state_key"`
	}
	json.Unmarshal(ev.JSON, &e)
	note.Type, note.Sender, note.Content = ev.Type, ev.Sender, e.Content
	if ev.Type == "m.room.member" && e.StateKey != nil {
		note.UserIsTarget = *e.StateKey == string(user)
		var c struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(e.Content, &c)
		note.Membership = c.Membership
	}
	room := id.RoomID(n.RoomID)
	read := func(typ, key, field string) (string, error) {
		sev, err := p.rooms.StateEvent(ctx, room, typ, key)
		if err != nil || sev == nil {
			return "", err
		}
		var c map[string]json.RawMessage
		json.Unmarshal(sev.Content(), &c)
		var v string
		json.Unmarshal(c[field], &v)
		return v, nil
	}
	if note.RoomName, err = read("m.room.name", "", "name"); err != nil {
		return err
	}
	if note.RoomAlias, err = read("m.room.canonical_alias", "", "alias"); err != nil {
		return err
	}
	if note.RoomName == "" {
		note.RoomName = note.RoomAlias // the room's display name, as clients show it
	}
	note.SenderDisplayName, err = read("m.room.member", ev.Sender, "displayname")
	return err
}
