package roomserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// Errors of the alias and report calls.
var (
	ErrAliasTaken    = errors.New("roomserver: alias already in use")
	ErrAliasNotFound = errors.New("roomserver: unknown alias")
)

// Alias is a room alias of this server and who created it.
type Alias struct {
	Alias   id.RoomAlias
	RoomID  id.RoomID
	Creator id.UserID
}

// CreateAlias makes a local alias point to a room this server knows.
func (r *Roomserver) CreateAlias(ctx context.Context, a Alias) error {
	// The store, not the room cache: CreateRoom calls this holding the new room's lock.
	if _, err := r.store.Room(ctx, r.db, string(a.RoomID)); errors.Is(err, roomstore.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrRoomNotFound, a.RoomID)
	} else if err != nil {
		return err
	}
	err := r.db.WithTx(ctx, func(tx *storage.Tx) error {
		return r.store.InsertAlias(ctx, tx, roomstore.Alias{Alias: string(a.Alias), RoomID: string(a.RoomID), Creator: string(a.Creator)})
	})
	if errors.Is(err, roomstore.ErrAliasTaken) {
		return fmt.Errorf("%w: %s", ErrAliasTaken, a.Alias)
	}
	return err
}

// ResolveAlias returns what a local alias points to; ErrAliasNotFound if nothing.
func (r *Roomserver) ResolveAlias(ctx context.Context, alias id.RoomAlias) (Alias, error) {
	a, err := r.store.LookupAlias(ctx, r.db, string(alias))
	if errors.Is(err, roomstore.ErrNotFound) {
		return Alias{}, fmt.Errorf("%w: %s", ErrAliasNotFound, alias)
	}
	if err != nil {
		return Alias{}, err
	}
	return Alias{Alias: alias, RoomID: id.RoomID(a.RoomID), Creator: id.UserID(a.Creator)}, nil
}

// DeleteAlias removes a local alias; ErrAliasNotFound if it did not exist.
func (r *Roomserver) DeleteAlias(ctx context.Context, alias id.RoomAlias) error {
	err := r.db.WithTx(ctx, func(tx *storage.Tx) error { return r.store.DeleteAlias(ctx, tx, string(alias)) })
	if errors.Is(err, roomstore.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrAliasNotFound, alias)
	}
	return err
}

// RoomAliases returns the local aliases of a room, sorted.
func (r *Roomserver) RoomAliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
	as, err := r.store.RoomAliases(ctx, r.db, string(roomID))
	if err != nil {
		return nil, err
	}
	out := make([]id.RoomAlias, len(as))
	for i, a := range as {
		out[i] = id.RoomAlias(a)
	}
	return out, nil
}

// Report is a user's report of an event (client-server API, "Reporting content").
type Report struct {
	RoomID  id.RoomID
	EventID id.EventID
	UserID  id.UserID
	Reason  *string
	Score   *int64
}

// ReportEvent stores a report for the server's administrators.
func (r *Roomserver) ReportEvent(ctx context.Context, rep Report) error {
	return r.db.WithTx(ctx, func(tx *storage.Tx) error {
		return r.store.InsertReport(ctx, tx, roomstore.Report{RoomID: string(rep.RoomID), EventID: string(rep.EventID),
			UserID: string(rep.UserID), Reason: rep.Reason, Score: rep.Score, ReceivedTS: time.Now().UnixMilli()})
	})
}

// SetPublished adds a room to the server's public room directory or takes it off.
func (r *Roomserver) SetPublished(ctx context.Context, roomID id.RoomID, published bool) error {
	if _, err := r.RoomVersion(ctx, roomID); err != nil {
		return err
	}
	return r.db.WithTx(ctx, func(tx *storage.Tx) error {
		return r.store.SetPublished(ctx, tx, string(roomID), published)
	})
}

// Published reports whether a room is in the public room directory.
func (r *Roomserver) Published(ctx context.Context, roomID id.RoomID) (bool, error) {
	return r.store.Published(ctx, r.db, string(roomID))
}

// PublishedRooms returns the rooms of the public room directory, sorted by ID.
func (r *Roomserver) PublishedRooms(ctx context.Context) ([]id.RoomID, error) {
	ids, err := r.store.PublishedRooms(ctx, r.db)
	if err != nil {
		return nil, err
	}
	out := make([]id.RoomID, len(ids))
	for i, s := range ids {
		out[i] = id.RoomID(s)
	}
	return out, nil
}
