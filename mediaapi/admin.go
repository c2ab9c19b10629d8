package mediaapi

import (
	"errors"
	"net/http"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/userapi"
)

// deleteBatch is how many of a user's media items are read per round when deleting them all.
const deleteBatch = 500

// registerAdmin adds the media admin endpoints, shaped like Synapse's admin API
// (/_synapse/admin), which admin tools use.
func (m *Media) registerAdmin(r *mux.Router) {
	r.Handle("/_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}", m.admin(m.adminQuarantine(true))).Methods(http.MethodPost)
	r.Handle("/_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}", m.admin(m.adminQuarantine(false))).Methods(http.MethodPost)
	r.Handle("/_synapse/admin/v1/media/{serverName}/{mediaId}", m.admin(m.adminDelete)).Methods(http.MethodDelete)
	r.Handle("/_synapse/admin/v1/user/{userId}/media/quarantine", m.admin(m.adminQuarantineUser)).Methods(http.MethodPost)
	r.Handle("/_synapse/admin/v1/users/{userId}/media", m.admin(m.adminDeleteUser)).Methods(http.MethodDelete)
}

// admin wraps h so that only server admins may call it.
func (m *Media) admin(h authedFunc) http.Handler {
	return m.authed(func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
		if !dev.IsAdmin {
			return httpapi.Forbidden("You are not a server admin")
		}
		return h(w, r, dev)
	}, false)
}

// adminQuarantine quarantines or releases one media item; quarantined media answers 404 to
// downloads and thumbnails until it is released.
func (m *Media) adminQuarantine(quarantine bool) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
		ref, err := refOf(r)
		if err != nil {
			return err
		}
		err = m.store.SetQuarantined(r.Context(), ref.server, ref.id, quarantine)
		if errors.Is(err, mediastore.ErrNotFound) {
			return notFound()
		} else if err != nil {
			return err
		}
		m.log.Info("media quarantine changed", "media", ref.String(), "quarantined", quarantine, "admin", dev.UserID)
		httpapi.WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}
}

// adminDelete deletes one local media item, its thumbnails, and their files unless other rows
// name the same content.
func (m *Media) adminDelete(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ref, err := refOf(r)
	if err != nil {
		return err
	}
	if !m.local(ref) {
		return httpapi.InvalidParam("Can only delete local media")
	}
	if err := m.deleteMedia(r, ref); errors.Is(err, mediastore.ErrNotFound) {
		return notFound()
	} else if err != nil {
		return err
	}
	m.log.Info("media deleted", "media", ref.String(), "admin", dev.UserID)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deleted_media": []string{ref.id}, "total": 1})
	return nil
}

// deleteMedia deletes a media item's rows, then the files no other row names;
// mediastore.ErrNotFound if there is no such item.
func (m *Media) deleteMedia(r *http.Request, ref mediaRef) error {
	hashes, err := m.store.Delete(r.Context(), ref.server, ref.id)
	if err != nil {
		return err
	}
	m.release(r.Context(), hashes)
	return nil
}

// adminUser parses the {userId} of an admin path; it must be a local user.
func (m *Media) adminUser(r *http.Request) (id.UserID, error) {
	u := id.UserID(httpapi.Vars(r)["userId"])
	_, server, err := u.Parse()
	if err != nil {
		return "", httpapi.InvalidParam("Invalid user ID")
	}
	if server != m.opts.ServerName {
		return "", httpapi.InvalidParam("Can only manage local users")
	}
	return u, nil
}

// adminQuarantineUser quarantines every media item a user uploaded.
func (m *Media) adminQuarantineUser(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	u, err := m.adminUser(r)
	if err != nil {
		return err
	}
	n, err := m.store.QuarantineUser(r.Context(), string(u), true)
	if err != nil {
		return err
	}
	m.log.Info("media of a user quarantined", "user", u, "count", n, "admin", dev.UserID)
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"num_quarantined": n})
	return nil
}

// adminDeleteUser deletes every media item a user uploaded or created.
func (m *Media) adminDeleteUser(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	u, err := m.adminUser(r)
	if err != nil {
		return err
	}
	deleted := []string{}
	for {
		list, err := m.store.UserMedia(r.Context(), string(u), deleteBatch)
		if err != nil {
			return err
		}
		for _, item := range list {
			err := m.deleteMedia(r, mediaRef{server: item.ServerName, id: item.MediaID})
			if errors.Is(err, mediastore.ErrNotFound) {
				continue // deleted by another request meanwhile
			} else if err != nil {
				return err
			}
			deleted = append(deleted, item.MediaID)
		}
		if len(list) < deleteBatch {
			break
		}
	}
	m.log.Info("media of a user deleted", "user", u, "count", len(deleted), "admin", dev.UserID)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deleted_media": deleted, "total": len(deleted)})
	return nil
}
