package mediaapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/mediastore"
)

// fetchRemote downloads a remote media item into the repository and records it under its
// origin's server name and media ID, the key it is found by afterwards. Concurrent requests
// for one item share a single download. The spec's answer for remote media over the size
// limit is 502 M_TOO_LARGE.
func (m *Media) fetchRemote(ctx context.Context, ref mediaRef) (*mediastore.Media, error) {
	if m.opts.Remote == nil {
		return nil, notFound()
	}
	v, err := m.flights.do("remote "+ref.String(), func() (any, error) {
		// Shared with other requests: one client hanging up must not end it for the rest.
		ctx := context.WithoutCancel(ctx)
		if item, err := m.store.Get(ctx, ref.server, ref.id); err == nil {
			return item, nil // another request stored it meanwhile
		}
		rm, err := m.opts.Remote.FetchMedia(ctx, ref.server, ref.id)
		if err != nil {
			m.log.Info("remote media unavailable", "media", ref.String(), "error", err)
			return nil, notFound()
		}
		defer rm.Body.Close()
		st, err := m.files.stage(rm.Body, m.cfg.MaxUploadSize)
		if errors.Is(err, errTooLarge) {
			return nil, httpapi.NewError(http.StatusBadGateway, "M_TOO_LARGE", "Remote content is larger than %d bytes", m.cfg.MaxUploadSize)
		}
		var rerr *readError
		if errors.As(err, &rerr) {
			return nil, httpapi.NewError(http.StatusBadGateway, "M_UNKNOWN", "Could not download the remote content")
		}
		if err != nil {
			return nil, err
		}
		now := time.Now().UnixMilli()
		// Remote media cached now is "new" for the freeze of unauthenticated access, even if
		// its origin stored it long ago (client-server API, "Client behaviour").
		item := mediastore.Media{
			ServerName: ref.server, MediaID: ref.id, SHA256: st.hash, Size: st.size,
			ContentType: cleanContentType(rm.ContentType), Filename: rm.Filename,
			CreatedTS: now, UploadedTS: now, LegacyAccess: !m.cfg.FreezeLegacyUnauthenticated,
		}
		err = m.commit(ctx, st, func() error {
			err := m.store.Insert(ctx, item)
			if errors.Is(err, mediastore.ErrExists) {
				return nil // stored by another process meanwhile; the row names the same kind of content
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		return m.store.Get(ctx, ref.server, ref.id)
	})
	if err != nil {
		return nil, err
	}
	return v.(*mediastore.Media), nil
}
