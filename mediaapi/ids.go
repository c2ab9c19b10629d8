package mediaapi

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"

	"maunium.net/go/mautrix/federation"

	"github.com/latticehq/lattice/internal/httpapi"
)

// maxMediaIDLength bounds media IDs from outside; ours are 32 characters.
const maxMediaIDLength = 255

// newMediaID returns a random media ID: 24 bytes in URL-safe base64, 32 characters of the
// alphabet the spec allows.
func newMediaID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validMediaID reports whether id may be a media ID (client-server API, "Security
// considerations" of the content repository: only A-Za-z0-9, _ and -). Checking this
// whitelist, not a blacklist of '.' and '/', is what keeps traversal tricks out.
func validMediaID(id string) bool {
	if id == "" || len(id) > maxMediaIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validServerName reports whether name is a server name (appendices, "Server name").
func validServerName(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	_, _, ok := federation.ParseServerName(name)
	return ok
}

// mediaRef names one media item: the server it comes from and its ID there.
type mediaRef struct {
	server string
	id     string
}

func (m mediaRef) String() string { return m.server + "/" + m.id }

// mxc is the item's content URI.
func (m mediaRef) mxc() string { return "mxc://" + m.server + "/" + m.id }

// parseMediaRef checks the {serverName} and {mediaId} of a media path (already
// percent-decoded). Anything that is not a server name and a media ID of the allowed alphabet
// is unknown media: 404 M_NOT_FOUND, the same answer as for an ID that does not exist, so the
// check reveals nothing.
func parseMediaRef(serverName, mediaID string) (mediaRef, error) {
	if !validServerName(serverName) || !validMediaID(mediaID) {
		return mediaRef{}, httpapi.NotFound("Unknown media")
	}
	return mediaRef{server: serverName, id: mediaID}, nil
}

// refOf parses the media of a request routed with {serverName} and {mediaId}.
func refOf(r *http.Request) (mediaRef, error) {
	v := httpapi.Vars(r)
	return parseMediaRef(v["serverName"], v["mediaId"])
}
