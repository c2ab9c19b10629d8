package userapi

import (
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/latticehq/lattice/internal/httpapi"
)

// Authenticate returns the device whose access token a client request presents (client-server
// API, "Using access tokens"): from the Authorization header, or the deprecated access_token
// query parameter. It records the device as seen. Guests are refused unless allowGuests. The
// error is a Matrix error ready to send.
func Authenticate(r *http.Request, api API, allowGuests bool) (*Device, error) {
	token, err := AccessToken(r)
	if err != nil {
		return nil, err
	}
	dev, err := api.QueryAccessToken(r.Context(), token)
	switch {
	case errors.Is(err, ErrTokenExpired):
		return nil, httpapi.UnknownToken(true, "Access token has expired")
	case errors.Is(err, ErrUnknownToken):
		return nil, httpapi.UnknownToken(false, "Unrecognised access token")
	case err != nil:
		return nil, err
	}
	if dev.IsGuest && !allowGuests {
		return nil, httpapi.NewError(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here")
	}
	api.RecordSeen(r.Context(), dev, ClientIP(r), r.UserAgent())
	return dev, nil
}

// AccessToken extracts the access token of a request, M_MISSING_TOKEN if there is none.
func AccessToken(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", httpapi.MissingToken("Authorization header is not a Bearer token")
		}
		return strings.TrimSpace(token), nil
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t, nil
	}
	return "", httpapi.MissingToken("Missing access token")
}

// ClientIP is the address a request came from.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
