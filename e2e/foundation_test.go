package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"

	"github.com/latticehq/lattice/internal/config"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// do sends a raw request and returns the status, headers and body.
func do(t *testing.T, method, url string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// wantError checks a Matrix error answer.
func wantError(t *testing.T, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var e struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if status != wantStatus || e.ErrCode != wantCode || e.Error == "" {
		t.Fatalf("got %d %s (%q), want %d %s", status, e.ErrCode, e.Error, wantStatus, wantCode)
	}
}

func TestVersions(t *testing.T) {
	s := Start(t)
	resp, err := s.Client(t).Versions(ctx(t))
	if err != nil {
		t.Fatalf("versions: %v", err)
	}
	if resp.UnstableFeatures == nil {
		t.Error("unstable_features missing")
	}
	// Lists must be [] rather than null: some clients iterate without checking.
	_, _, body := do(t, "GET", s.URL+"/_matrix/client/versions", nil)
	if !bytes.Contains(body, []byte(`"versions":[]`)) {
		t.Errorf("versions body = %s", body)
	}
}

func TestWellKnown(t *testing.T) {
	s := Start(t, func(c *config.Config) {
		c.WellKnown.ClientBaseURL = "https://matrix.example.org"
		c.WellKnown.Server = "matrix.example.org:443"
	})
	var client struct {
		Homeserver struct {
			BaseURL string `json:"base_url"`
		} `json:"m.homeserver"`
	}
	status, hdr, body := do(t, "GET", s.URL+"/.well-known/matrix/client", nil)
	if err := json.Unmarshal(body, &client); status != 200 || err != nil || client.Homeserver.BaseURL != "https://matrix.example.org" {
		t.Errorf("client well-known: %d %s", status, body)
	}
	if hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("client well-known lacks CORS headers (browsers fetch it cross-origin)")
	}
	var server struct {
		Server string `json:"m.server"`
	}
	status, _, body = do(t, "GET", s.URL+"/.well-known/matrix/server", nil)
	if err := json.Unmarshal(body, &server); status != 200 || err != nil || server.Server != "matrix.example.org:443" {
		t.Errorf("server well-known: %d %s", status, body)
	}

	bare := Start(t)
	for _, p := range []string{"/.well-known/matrix/client", "/.well-known/matrix/server"} {
		status, _, body := do(t, "GET", bare.URL+p, nil)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}
}

func TestFederationVersionAndKeys(t *testing.T) {
	s := Start(t)
	var v struct {
		Server struct{ Name, Version string } `json:"server"`
	}
	status, _, body := do(t, "GET", s.URL+"/_matrix/federation/v1/version", nil)
	if err := json.Unmarshal(body, &v); status != 200 || err != nil || v.Server.Name != "Lattice" || v.Server.Version == "" {
		t.Errorf("federation version: %d %s", status, body)
	}

	var keys federation.ServerKeyResponse
	status, _, body = do(t, "GET", s.URL+"/_matrix/key/v2/server", nil)
	if err := json.Unmarshal(body, &keys); status != 200 || err != nil {
		t.Fatalf("server keys: %d %s", status, body)
	}
	if keys.ServerName != "localhost" || len(keys.VerifyKeys) != 1 || !keys.ValidUntilTS.After(time.Now()) {
		t.Errorf("server keys = %s", body)
	}
	if err := keys.VerifySelfSignature(); err != nil {
		t.Errorf("self-signature: %v", err)
	}

	query := func(body string) (int, federation.QueryKeysResponse, []byte) {
		status, _, b := do(t, "POST", s.URL+"/_matrix/key/v2/query", []byte(body))
		var r federation.QueryKeysResponse
		if status == 200 {
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
		}
		return status, r, b
	}
	if status, r, b := query(`{"server_keys":{"localhost":{}}}`); status != 200 || len(r.ServerKeys) != 1 || r.ServerKeys[0].VerifySelfSignature() != nil {
		t.Errorf("query own keys: %d %s", status, b)
	}
	if status, _, b := query(`{"server_keys":{}}`); status != 200 || !bytes.Contains(b, []byte(`"server_keys":[]`)) {
		t.Errorf("empty query: %d %s", status, b)
	}
	status, _, body = do(t, "GET", s.URL+"/_matrix/key/v2/query/localhost", nil)
	if status != 200 || !bytes.Contains(body, []byte(`"server_name":"localhost"`)) {
		t.Errorf("GET query: %d %s", status, body)
	}
}

func TestCORS(t *testing.T) {
	s := Start(t)
	check := func(name string, hdr http.Header) {
		t.Helper()
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
			"Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
		} {
			if got := hdr.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", name, k, got, want)
			}
		}
	}
	for _, p := range []string{"/_matrix/client/versions", "/_matrix/client/v3/login", "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1"} {
		status, hdr, _ := do(t, "OPTIONS", s.URL+p, nil,
			"Origin", "https://app.element.io", "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "authorization, content-type")
		if status != 200 {
			t.Errorf("preflight %s: status %d", p, status)
		}
		check("preflight "+p, hdr)
	}
	_, hdr, _ := do(t, "GET", s.URL+"/_matrix/client/versions", nil, "Origin", "https://app.element.io")
	check("GET versions", hdr)
	_, hdr, _ = do(t, "GET", s.URL+"/_matrix/client/v3/nope", nil)
	check("404", hdr)
}

func TestUnknownEndpoint(t *testing.T) {
	s := Start(t)
	cli := s.Client(t)
	_, err := cli.MakeRequest(ctx(t), "GET", cli.BuildClientURL("v3", "foo"), nil, nil)
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || !errors.Is(err, mautrix.MUnrecognized) || !httpErr.IsStatus(404) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/versions", []byte("{}"))
	wantError(t, status, body, 405, "M_UNRECOGNIZED")
	status, _, body = do(t, "GET", s.URL+"/_matrix/federation/v1/nope", nil)
	wantError(t, status, body, 404, "M_UNRECOGNIZED")
}

func TestBadJSON(t *testing.T) {
	s := Start(t)
	url := s.URL + "/_matrix/key/v2/query"
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{"", 400, "M_NOT_JSON"},
		{"{not json", 400, "M_NOT_JSON"},
		{`{"server_keys":{}} trailing`, 400, "M_NOT_JSON"},
		{`{"server_keys":5}`, 400, "M_BAD_JSON"},
		{`[]`, 400, "M_BAD_JSON"},
		{`{}`, 400, "M_MISSING_PARAM"},
		{`{"server_keys":{"a":{}},"pad":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "M_TOO_LARGE"},
	} {
		status, _, body := do(t, "POST", url, []byte(tc.body), "Content-Type", "application/json")
		wantError(t, status, body, tc.status, tc.code)
	}
	// Through the client library too, as a bridge or client would meet it.
	cli := s.Client(t)
	_, err := cli.MakeFullRequest(ctx(t), mautrix.FullRequest{Method: "POST", URL: url, RequestBytes: []byte("{oops"), MaxAttempts: 1})
	if !errors.Is(err, mautrix.MNotJSON) {
		t.Errorf("mautrix: %v", err)
	}
}

func TestLandingPage(t *testing.T) {
	s := Start(t)
	status, hdr, body := do(t, "GET", s.URL+"/", nil)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !bytes.Contains(body, []byte("Lattice")) {
		t.Errorf("landing page: %d %s", status, body)
	}
}

func TestMetrics(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.Metrics.Address = "127.0.0.1:0" })
	do(t, "GET", s.URL+"/_matrix/client/versions", nil)
	status, _, body := do(t, "GET", s.Server.URL("metrics")+"/metrics", nil)
	if status != 200 || !bytes.Contains(body, []byte(`lattice_http_requests_total{code="200",method="GET",route="/_matrix/client/versions"}`)) {
		t.Errorf("metrics: %d\n%s", status, body)
	}
	for _, m := range []string{"lattice_roomserver_cached_rooms", "lattice_roomserver_event_cache_bytes", "lattice_roomserver_event_cache_hits_total", "lattice_roomserver_auth_chain_cache_nids", "lattice_roomserver_state_key_cache_entries", "lattice_userapi_token_cache_hits_total"} {
		if !bytes.Contains(body, []byte(m)) {
			t.Errorf("metrics lack %s", m)
		}
	}
	// Metrics are not served on the public listener.
	status, _, _ = do(t, "GET", s.URL+"/metrics", nil)
	if status != 404 {
		t.Errorf("public /metrics: %d", status)
	}
}

func TestListenerResources(t *testing.T) {
	s := Start(t, func(c *config.Config) {
		c.Listeners = []config.Listen{
			{Address: "127.0.0.1:0", Resources: []string{config.ResourceClient}},
			{Address: "127.0.0.2:0", Resources: []string{config.ResourceFederation}},
		}
	})
	fed := s.Server.URL(config.ResourceFederation)
	if status, _, _ := do(t, "GET", s.URL+"/_matrix/federation/v1/version", nil); status != 404 {
		t.Errorf("federation on the client listener: %d", status)
	}
	if status, _, _ := do(t, "GET", fed+"/_matrix/federation/v1/version", nil); status != 200 {
		t.Errorf("federation listener: %d", status)
	}
	if status, _, _ := do(t, "GET", fed+"/_matrix/client/versions", nil); status != 404 {
		t.Errorf("client API on the federation listener: %d", status)
	}
}
