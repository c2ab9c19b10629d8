package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
)

// mediaV1 and mediaV3 are the authenticated and the deprecated media API prefixes.
const (
	mediaV1 = "/_matrix/client/v1/media"
	mediaV3 = "/_matrix/media/v3"
)

// cspWanted is the Content-Security-Policy the spec recommends for served media.
const cspWanted = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';"

// withMedia changes the media section of a test server's config.
func withMedia(f func(*config.Media)) Option {
	return func(c *config.Config) { f(&c.Media) }
}

// uploadMedia uploads data as c through mautrix and returns its content URI.
func uploadMedia(t *testing.T, c *mautrix.Client, data []byte, contentType, filename string) id.ContentURI {
	t.Helper()
	resp, err := c.UploadMedia(ctx(t), mautrix.ReqUploadMedia{ContentBytes: data, ContentType: contentType, FileName: filename})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return resp.ContentURI
}

// mediaGet fetches a media path (under prefix) with c's token when c is not nil.
func mediaGet(t *testing.T, s *Server, c *mautrix.Client, prefix, path string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	if c != nil {
		hdr = append(hdr, bearer(c)...)
	}
	return do(t, "GET", s.URL+prefix+path, nil, hdr...)
}

// mxcPath is "serverName/mediaId" of a content URI.
func mxcPath(u id.ContentURI) string { return u.Homeserver + "/" + u.FileID }

// mediaFiles lists the files in the server's media folder, leaving out its temporary folder.
func mediaFiles(t *testing.T, s *Server) []string {
	t.Helper()
	root := s.Config.Path(s.Config.Media.Path)
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				out = append(out, "tmp/"+e.Name())
			}
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var mediaIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{24,}$`)

// TestMediaUploadDownload uploads with mautrix and downloads on both API generations: the
// bytes come back identical with the spec's headers, file names and dispositions.
func TestMediaUploadDownload(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	data := []byte("hello, media")
	mxc := uploadMedia(t, alice, data, "text/plain", "hello world.txt")
	if mxc.Homeserver != "localhost" || !mediaIDPattern.MatchString(mxc.FileID) {
		t.Fatalf("content URI %s", mxc)
	}
	got, err := alice.DownloadBytes(ctx(t), mxc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("mautrix download: %q, %v", got, err)
	}

	checkHeaders := func(name string, hdr http.Header, ct, disp string) {
		t.Helper()
		for k, want := range map[string]string{
			"Content-Type":                 ct,
			"Content-Disposition":          disp,
			"Content-Security-Policy":      cspWanted,
			"X-Content-Type-Options":       "nosniff",
			"Cross-Origin-Resource-Policy": "cross-origin",
			"Access-Control-Allow-Origin":  "*",
		} {
			if got := hdr.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", name, k, got, want)
			}
		}
	}
	for _, tc := range []struct {
		name, prefix string
		c            *mautrix.Client
	}{{"authenticated", mediaV1, alice}, {"legacy", mediaV3, nil}} {
		status, hdr, body := mediaGet(t, s, tc.c, tc.prefix, "/download/"+mxcPath(mxc))
		if status != 200 || !bytes.Equal(body, data) {
			t.Fatalf("%s download: %d %q", tc.name, status, body)
		}
		checkHeaders(tc.name, hdr, "text/plain", `inline; filename="hello world.txt"`)
		status, hdr, body = mediaGet(t, s, tc.c, tc.prefix, "/download/"+mxcPath(mxc)+"/other%20name.txt")
		if status != 200 || !bytes.Equal(body, data) {
			t.Fatalf("%s download with a file name: %d %q", tc.name, status, body)
		}
		checkHeaders(tc.name+" with a file name", hdr, "text/plain", `inline; filename="other name.txt"`)
	}

	// Unsafe types are attachments; no file name, no filename parameter; no type, octet-stream.
	html := uploadMedia(t, alice, []byte("<script>alert(1)</script>"), "text/html", "")
	_, hdr, _ := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(html))
	checkHeaders("html", hdr, "text/html", "attachment")
	status, _, body := do(t, "POST", s.URL+mediaV3+"/upload?filename=%E2%82%AC.bin", []byte{1, 2, 3}, bearer(alice)...)
	var up struct {
		ContentURI id.ContentURI `json:"content_uri"`
	}
	if status != 200 || json.Unmarshal(body, &up) != nil {
		t.Fatalf("raw upload: %d %s", status, body)
	}
	_, hdr, _ = mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(up.ContentURI))
	checkHeaders("untyped", hdr, "application/octet-stream", `attachment; filename="_.bin"; filename*=utf-8''%E2%82%AC.bin`)

	// Range requests and HEAD are answered from the file.
	status, hdr, body = mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc), "Range", "bytes=7-11")
	if status != 206 || string(body) != "media" || hdr.Get("Content-Range") != "bytes 7-11/12" {
		t.Fatalf("range: %d %q %q", status, body, hdr.Get("Content-Range"))
	}
	status, hdr, _ = mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc), "Range", "bytes=100-")
	if status != 416 || hdr.Get("Content-Range") != "bytes */12" {
		t.Fatalf("unsatisfiable range: %d %q", status, hdr.Get("Content-Range"))
	}
	status, hdr, body = do(t, "HEAD", s.URL+mediaV3+"/download/"+mxcPath(mxc), nil)
	if status != 200 || len(body) != 0 || hdr.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("HEAD: %d %q %v", status, body, hdr)
	}

	// Configuration on both generations.
	cfg, err := alice.GetMediaConfig(ctx(t))
	if err != nil || cfg.UploadSize != s.Config.Media.MaxUploadSize {
		t.Fatalf("media config: %+v, %v", cfg, err)
	}
	status, _, body = mediaGet(t, s, alice, mediaV3, "/config")
	wantOK(t, status, body, `{"m.upload.size": `+strconv.FormatInt(s.Config.Media.MaxUploadSize, 10)+`}`)
}

// TestMediaErrors covers authentication and unknown media and endpoints.
func TestMediaErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	mxc := uploadMedia(t, alice, []byte("x"), "text/plain", "")
	for _, p := range []string{"/config", "/download/" + mxcPath(mxc), "/download/" + mxcPath(mxc) + "/a.txt",
		"/thumbnail/" + mxcPath(mxc) + "?width=32&height=32", "/preview_url?url=https://example.org/"} {
		status, _, body := mediaGet(t, s, nil, mediaV1, p)
		wantError(t, status, body, 401, "M_MISSING_TOKEN")
		status, _, body = mediaGet(t, s, nil, mediaV1, p, "Authorization", "Bearer nope")
		wantError(t, status, body, 401, "M_UNKNOWN_TOKEN")
	}
	for _, p := range []string{"/upload", "/upload/localhost/abcdefghijklmnopqrstuvwxyz"} {
		method := "POST"
		if strings.Count(p, "/") > 1 {
			method = "PUT"
		}
		status, _, body := do(t, method, s.URL+mediaV3+p, []byte("x"))
		wantError(t, status, body, 401, "M_MISSING_TOKEN")
	}
	status, _, body := do(t, "POST", s.URL+"/_matrix/media/v1/create", nil)
	wantError(t, status, body, 401, "M_MISSING_TOKEN")

	for _, p := range []string{"/download/localhost/unknownMediaID0123456789", "/download/other.example/unknownMediaID0123456789",
		"/thumbnail/localhost/unknownMediaID0123456789?width=1&height=1"} {
		status, _, body = mediaGet(t, s, alice, mediaV1, p)
		wantError(t, status, body, 404, "M_NOT_FOUND")
		status, _, body = mediaGet(t, s, nil, mediaV3, p)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}
	status, _, body = mediaGet(t, s, alice, mediaV3, "/nope")
	wantError(t, status, body, 404, "M_UNRECOGNIZED")
	status, _, body = do(t, "DELETE", s.URL+mediaV3+"/download/"+mxcPath(mxc), nil)
	wantError(t, status, body, 405, "M_UNRECOGNIZED")
	status, _, body = mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc)+"?timeout_ms=soon")
	wantError(t, status, body, 400, "M_INVALID_PARAM")
	status, _, body = mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc)+"?allow_redirect=maybe")
	wantError(t, status, body, 400, "M_INVALID_PARAM")
	// URL previews are off by default.
	status, _, body = mediaGet(t, s, alice, mediaV1, "/preview_url?url=https://example.org/")
	wantError(t, status, body, 404, "M_UNRECOGNIZED")
	// Guests may download but not upload.
	guest := newGuest(t, s, "guest")
	if got, err := guest.DownloadBytes(ctx(t), mxc); err != nil || string(got) != "x" {
		t.Fatalf("guest download: %q, %v", got, err)
	}
	status, _, body = do(t, "POST", s.URL+mediaV3+"/upload", []byte("x"), bearer(guest)...)
	wantError(t, status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")
}

// TestMediaDedup uploads the same bytes twice: two media IDs with their own names, one file.
func TestMediaDedup(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	data := bytes.Repeat([]byte("same bytes "), 1000)
	a := uploadMedia(t, alice, data, "text/plain", "a.txt")
	b := uploadMedia(t, bob, data, "application/octet-stream", "b.bin")
	if a == b {
		t.Fatalf("one content URI for two uploads: %s", a)
	}
	if files := mediaFiles(t, s); len(files) != 1 {
		t.Fatalf("media folder holds %v, want one file", files)
	}
	for _, tc := range []struct {
		mxc      id.ContentURI
		ct, disp string
	}{{a, "text/plain", `inline; filename="a.txt"`}, {b, "application/octet-stream", `attachment; filename="b.bin"`}} {
		status, hdr, body := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(tc.mxc))
		if status != 200 || !bytes.Equal(body, data) || hdr.Get("Content-Type") != tc.ct || hdr.Get("Content-Disposition") != tc.disp {
			t.Fatalf("download %s: %d %v", tc.mxc, status, hdr)
		}
	}
}

// TestMediaTooLarge refuses uploads over max_upload_size, announced or streamed, and keeps
// no trace of them on disk.
func TestMediaTooLarge(t *testing.T) {
	s := Start(t, withMedia(func(m *config.Media) { m.MaxUploadSize = 1000 }))
	alice := s.NewUser(t, "alice")
	if _, err := alice.UploadBytes(ctx(t), make([]byte, 1001), "application/octet-stream"); err == nil {
		t.Fatal("oversize upload accepted")
	} else {
		wantErrCode(t, err, 413, "M_TOO_LARGE")
	}
	// Without Content-Length the limit is found while streaming.
	req, err := http.NewRequestWithContext(ctx(t), "POST", s.URL+mediaV3+"/upload", io.MultiReader(bytes.NewReader(make([]byte, 600)), bytes.NewReader(make([]byte, 600))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 && req.ContentLength != -1 {
		t.Fatalf("request was not chunked: %d", req.ContentLength)
	}
	wantError(t, resp.StatusCode, body, 413, "M_TOO_LARGE")
	if files := mediaFiles(t, s); len(files) != 0 {
		t.Fatalf("refused uploads left %v", files)
	}
	uploadMedia(t, alice, make([]byte, 1000), "application/octet-stream", "")
}

// TestMediaPathTraversal sends media paths that try to leave the media folder: each is refused
// with a Matrix error, and the file placed next to the media folder is never served.
func TestMediaPathTraversal(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	secret := "top secret " + strconv.Itoa(os.Getpid())
	for _, p := range []string{filepath.Join(s.Config.Dir, "secret"), filepath.Join(s.Config.Path(s.Config.Media.Path), "secret")} {
		if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mxc := uploadMedia(t, alice, []byte("real content"), "text/plain", "")
	for _, p := range []string{
		"/download/localhost/../../secret",
		"/download/localhost/..%2F..%2Fsecret",
		"/download/localhost/%2e%2e%2f%2e%2e%2fsecret",
		"/download/localhost/%2E%2E",
		"/download/localhost/secret",
		"/download/../secret",
		"/download/..%2F..%2F/secret",
		"/download/localhost%2F..%2F../secret",
		"/download/localhost/%252e%252e%252fsecret",
		"/download/localhost/..%5C..%5Csecret",
		"/download/localhost/%C0%AE%C0%AE%2Fsecret",
		"/thumbnail/localhost/..%2F..%2Fsecret?width=32&height=32",
		"/thumbnail/localhost/%2e%2e?width=32&height=32",
	} {
		for _, prefix := range []string{mediaV1, mediaV3} {
			status, _, body := mediaGet(t, s, alice, prefix, p)
			var e struct {
				ErrCode string `json:"errcode"`
			}
			if (status != 404 && status != 400) || json.Unmarshal(body, &e) != nil || !strings.HasPrefix(e.ErrCode, "M_") {
				t.Errorf("%s%s: %d %q", prefix, p, status, body)
			}
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("%s%s served the file outside the media folder", prefix, p)
			}
		}
	}
	for _, p := range []string{"/upload/localhost/..%2F..%2Fsecret", "/upload/..%2F/x"} {
		status, _, body := do(t, "PUT", s.URL+mediaV3+p, []byte("overwrite"), bearer(alice)...)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}
	// The file name segment is only ever a name in a header.
	status, hdr, body := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc)+"/..%2F..%2Fsecret")
	if status != 200 || string(body) != "real content" || hdr.Get("Content-Disposition") != `inline; filename="../../secret"` {
		t.Fatalf("download named ../../secret: %d %q %q", status, body, hdr.Get("Content-Disposition"))
	}
	if got, _ := os.ReadFile(filepath.Join(s.Config.Dir, "secret")); string(got) != secret {
		t.Fatal("the file outside the media folder changed")
	}
}

// TestMediaRestart downloads media uploaded before a restart.
func TestMediaRestart(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	data := bytes.Repeat([]byte{0, 1, 2, 3, 255}, 5000)
	mxc := uploadMedia(t, alice, data, "application/octet-stream", "blob.bin")
	s.Restart(t)
	got, err := alice.DownloadBytes(ctx(t), mxc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download after restart: %d bytes, %v", len(got), err)
	}
	status, hdr, _ := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc))
	if status != 200 || hdr.Get("Content-Disposition") != `attachment; filename="blob.bin"` {
		t.Fatalf("after restart: %d %v", status, hdr)
	}
}

// TestMediaSurvivesKill kills the server with SIGKILL right after an upload was answered:
// the content and its metadata are there when it comes back.
func TestMediaSurvivesKill(t *testing.T) {
	run := binaryServer(t)
	p, base := run()
	alice := registerAt(t, base, "alice")
	data := bytes.Repeat([]byte("durable "), 4096)
	mxc := uploadMedia(t, alice, data, "text/plain", "d.txt")
	p.kill(t)
	_, base = run()
	pointAt(t, base, alice)
	got, err := alice.DownloadBytes(ctx(t), mxc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download after kill: %d bytes, %v", len(got), err)
	}
}

// TestMediaFrozenLegacy turns on the freeze of the unauthenticated endpoints: media stored
// before stays reachable there, media stored after only on the authenticated ones.
func TestMediaFrozenLegacy(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	png := testPNG(t, 100, 80)
	before := uploadMedia(t, alice, png, "image/png", "")
	s.Config.Media.FreezeLegacyUnauthenticated = true
	s.Restart(t)
	after := uploadMedia(t, alice, png, "image/png", "")
	created, err := alice.CreateMXC(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.UploadMedia(ctx(t), mautrix.ReqUploadMedia{ContentBytes: png, ContentType: "image/png", MXC: created.ContentURI}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/download/%s", "/download/%s/x.png", "/thumbnail/%s?width=32&height=32&method=crop"} {
		status, _, _ := mediaGet(t, s, nil, mediaV3, strings.Replace(p, "%s", mxcPath(before), 1))
		if status != 200 {
			t.Errorf("legacy %s of media from before the freeze: %d", p, status)
		}
		for _, mxc := range []id.ContentURI{after, created.ContentURI} {
			status, _, body := mediaGet(t, s, nil, mediaV3, strings.Replace(p, "%s", mxcPath(mxc), 1))
			wantError(t, status, body, 404, "M_NOT_FOUND")
			status, _, _ = mediaGet(t, s, alice, mediaV1, strings.Replace(p, "%s", mxcPath(mxc), 1))
			if status != 200 {
				t.Errorf("authenticated %s of frozen media: %d", p, status)
			}
		}
	}
}
