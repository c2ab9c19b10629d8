package mediaapi

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/userapi"
)

// maxFilenameLength bounds the file names kept with uploads, in bytes.
const maxFilenameLength = 255

// maxContentTypeLength bounds the content types kept with uploads.
const maxContentTypeLength = 255

// defaultContentType is the type of uploads that name none (spec v1.12).
const defaultContentType = "application/octet-stream"

// uploadMeta reads the content type and file name of an upload request.
func uploadMeta(r *http.Request) (contentType, filename string, err error) {
	contentType = cleanContentType(r.Header.Get("Content-Type"))
	filename = r.URL.Query().Get("filename")
	if len(filename) > maxFilenameLength {
		return "", "", httpapi.InvalidParam("filename is longer than %d bytes", maxFilenameLength)
	}
	if strings.ContainsFunc(filename, isControl) {
		return "", "", httpapi.InvalidParam("filename must not contain control characters")
	}
	return contentType, filename, nil
}

// cleanContentType returns the type an upload is kept with: as the client sent it when it
// is a well-formed media type, application/octet-stream otherwise.
func cleanContentType(ct string) string {
	ct = strings.TrimSpace(ct)
	if ct == "" || len(ct) > maxContentTypeLength || !utf8.ValidString(ct) || strings.ContainsFunc(ct, isControl) {
		return defaultContentType
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return defaultContentType
	}
	return ct
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// limitBody bounds the request body to the upload limit, refusing an announced oversize body
// before any of it is read.
func (m *Media) limitBody(w http.ResponseWriter, r *http.Request) error {
	limit := m.cfg.MaxUploadSize
	if r.ContentLength > limit {
		return httpapi.TooLarge("Cannot upload files larger than %d bytes", limit)
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return nil
}

// upload answers POST /_matrix/media/v3/upload.
func (m *Media) upload(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	contentType, filename, err := uploadMeta(r)
	if err != nil {
		return err
	}
	if err := m.limitBody(w, r); err != nil {
		return err
	}
	st, err := m.files.stage(r.Body, m.cfg.MaxUploadSize)
	if err != nil {
		return storeErr(err, m.cfg.MaxUploadSize)
	}
	now := time.Now().UnixMilli()
	item := mediastore.Media{
		ServerName: m.opts.ServerName, SHA256: st.hash, Size: st.size, ContentType: contentType, Filename: filename,
		UserID: string(dev.UserID), CreatedTS: now, UploadedTS: now, LegacyAccess: !m.cfg.FreezeLegacyUnauthenticated,
	}
	err = m.commit(ctx, st, func() error {
		// A random 192-bit ID does not collide; the loop only guards against a broken source.
		for range 3 {
			item.MediaID = newMediaID()
			if err := m.store.Insert(ctx, item); !errors.Is(err, mediastore.ErrExists) {
				return err
			}
		}
		return errors.New("could not pick a free media ID")
	})
	if err != nil {
		return err
	}
	m.log.Debug("media uploaded", "media", item.MediaID, "user", dev.UserID, "size", st.size)
	ref := mediaRef{server: item.ServerName, id: item.MediaID}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"content_uri": ref.mxc()})
	return nil
}

// create answers POST /_matrix/media/v1/create (spec v1.7): a media ID whose content comes
// later. Its body, an empty object, carries nothing, so it is not read.
func (m *Media) create(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	now := time.Now()
	expires := now.Add(m.cfg.UnusedExpiry).UnixMilli()
	item := mediastore.Media{
		ServerName: m.opts.ServerName, MediaID: newMediaID(), ContentType: defaultContentType,
		UserID: string(dev.UserID), CreatedTS: now.UnixMilli(), ExpiresTS: expires,
	}
	err := m.store.CreatePending(ctx, item, m.cfg.MaxPendingUploads, now.UnixMilli())
	if errors.Is(err, mediastore.ErrTooManyPending) {
		return httpapi.LimitExceeded(0, "Too many pending uploads: upload to the created media IDs first")
	} else if err != nil {
		return err
	}
	ref := mediaRef{server: item.ServerName, id: item.MediaID}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"content_uri": ref.mxc(), "unused_expires_at": expires})
	return nil
}

// uploadTo answers PUT /_matrix/media/v3/upload/{serverName}/{mediaId} (spec v1.7): the
// content of a media ID from create, by its creator, once.
func (m *Media) uploadTo(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	ref, err := refOf(r)
	if err != nil {
		return err
	}
	if !m.local(ref) {
		return httpapi.NotFound("Unknown media ID")
	}
	contentType, filename, err := uploadMeta(r)
	if err != nil {
		return err
	}
	if err := m.checkUploadable(ctx, ref, string(dev.UserID)); err != nil {
		return err
	}
	if err := m.limitBody(w, r); err != nil {
		return err
	}
	st, err := m.files.stage(r.Body, m.cfg.MaxUploadSize)
	if err != nil {
		return storeErr(err, m.cfg.MaxUploadSize)
	}
	now := time.Now().UnixMilli()
	err = m.commit(ctx, st, func() error {
		return m.store.Complete(ctx, mediastore.Media{
			ServerName: ref.server, MediaID: ref.id, SHA256: st.hash, Size: st.size, ContentType: contentType,
			Filename: filename, UploadedTS: now, LegacyAccess: !m.cfg.FreezeLegacyUnauthenticated,
		}, now)
	})
	switch {
	case errors.Is(err, mediastore.ErrUploaded):
		return cannotOverwrite()
	case errors.Is(err, mediastore.ErrNotFound):
		return httpapi.NotFound("Unknown or expired media ID")
	case err != nil:
		return err
	}
	m.waiters.wake(ref)
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// checkUploadable refuses an upload to a media ID before its body is read: unknown or
// expired IDs, another user's, and IDs that have content already.
func (m *Media) checkUploadable(ctx context.Context, ref mediaRef, user string) error {
	item, err := m.store.Get(ctx, ref.server, ref.id)
	if errors.Is(err, mediastore.ErrNotFound) {
		return httpapi.NotFound("Unknown media ID")
	} else if err != nil {
		return err
	}
	if item.UserID != user {
		return httpapi.Forbidden("This media ID was created by another user")
	}
	if !item.Pending() {
		return cannotOverwrite()
	}
	if item.ExpiresTS <= time.Now().UnixMilli() {
		return httpapi.NotFound("This media ID has expired")
	}
	return nil
}

func cannotOverwrite() error {
	return httpapi.NewError(http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
}
