package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/latticehq/lattice/internal/config"
)

// TestMediaAsyncUpload runs the asynchronous upload of spec v1.7: a created media ID, a
// download that waits for it, the upload by its creator, and the refusals around it.
func TestMediaAsyncUpload(t *testing.T) {
	s := Start(t, withMedia(func(m *config.Media) { m.MaxPendingUploads = 3 }))
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	before := time.Now()
	created, err := alice.CreateMXC(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	mxc := created.ContentURI
	if mxc.Homeserver != "localhost" || !mediaIDPattern.MatchString(mxc.FileID) {
		t.Fatalf("content URI %s", mxc)
	}
	exp := created.UnusedExpiresAt.Time
	if exp.Before(before.Add(24*time.Hour-time.Minute)) || exp.After(time.Now().Add(24*time.Hour+time.Minute)) {
		t.Fatalf("unused_expires_at %v is not a day from now", exp)
	}

	// Not uploaded yet: a download waits up to timeout_ms, then 504 M_NOT_YET_UPLOADED.
	start := time.Now()
	status, _, body := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc)+"?timeout_ms=300")
	wantError(t, status, body, 504, "M_NOT_YET_UPLOADED")
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("answered after %v, before timeout_ms", waited)
	}
	status, _, body = mediaGet(t, s, nil, mediaV3, "/thumbnail/"+mxcPath(mxc)+"?width=32&height=32&timeout_ms=0")
	wantError(t, status, body, 504, "M_NOT_YET_UPLOADED")

	// A download waiting with a long timeout gets the content once it is uploaded.
	type result struct {
		status  int
		body    []byte
		elapsed time.Duration
	}
	waiting := make(chan result, 1)
	sent := make(chan struct{})
	go func() {
		start := time.Now()
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET",
			s.URL+mediaV1+"/download/"+mxcPath(mxc)+"?timeout_ms=30000", nil)
		req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			waiting <- result{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		waiting <- result{resp.StatusCode, buf.Bytes(), time.Since(start)}
	}()

	<-sent // the download is on its way before the upload starts
	data := []byte("uploaded later")
	put := func(c *mautrix.Client, data []byte) error {
		_, err := c.UploadMedia(ctx(t), mautrix.ReqUploadMedia{ContentBytes: data, ContentType: "text/plain", FileName: "later.txt", MXC: mxc})
		return err
	}
	// Only the creator may upload.
	wantErrCode(t, put(bob, []byte("not mine")), 403, "M_FORBIDDEN")
	uploadStart := time.Now()
	if err := put(alice, data); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-waiting:
		if r.status != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("waiting download: %d %q", r.status, r.body)
		}
		t.Logf("waiting download answered %v after it started, %v after the upload started", r.elapsed, time.Since(uploadStart))
	case <-time.After(30 * time.Second):
		t.Fatal("waiting download did not finish")
	}
	// Once only.
	wantErrCode(t, put(alice, []byte("again")), 409, "M_CANNOT_OVERWRITE_MEDIA")
	wantErrCode(t, put(bob, []byte("again")), 403, "M_FORBIDDEN")
	status, hdr, body := mediaGet(t, s, nil, mediaV3, "/download/"+mxcPath(mxc))
	if status != 200 || !bytes.Equal(body, data) || hdr.Get("Content-Disposition") != `inline; filename="later.txt"` {
		t.Fatalf("download after upload: %d %q %v", status, body, hdr)
	}

	// Unknown and remote media IDs cannot be uploaded to.
	for _, p := range []string{"/upload/localhost/neverCreated0123456789abc", "/upload/other.example/" + mxc.FileID} {
		status, _, body := do(t, "PUT", s.URL+mediaV3+p, []byte("x"), bearer(alice)...)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}

	// At most max_pending_uploads created IDs wait for their upload, per user.
	var pending []string
	for range 3 {
		c, err := alice.CreateMXC(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, c.ContentURI.FileID)
	}
	_, err = alice.CreateMXC(ctx(t))
	wantErrCode(t, err, 429, "M_LIMIT_EXCEEDED")
	if _, err := bob.CreateMXC(ctx(t)); err != nil {
		t.Fatalf("bob's own limit: %v", err)
	}
	status, _, body = do(t, "PUT", s.URL+mediaV3+"/upload/localhost/"+pending[0], []byte("done"), bearer(alice)...)
	wantOK(t, status, body, `{}`)
	status, _, body = do(t, "POST", s.URL+"/_matrix/media/v1/create", []byte(`{}`), bearer(alice)...)
	var resp map[string]any
	if status != 200 || json.Unmarshal(body, &resp) != nil || resp["content_uri"] == nil || resp["unused_expires_at"] == nil {
		t.Fatalf("create after an upload: %d %s", status, body)
	}
}

// TestMediaAsyncExpiry lets a created media ID expire: downloads then answer 404 at once and
// the upload is refused.
func TestMediaAsyncExpiry(t *testing.T) {
	s := Start(t, withMedia(func(m *config.Media) { m.UnusedExpiry = time.Second }))
	alice := s.NewUser(t, "alice")
	created, err := alice.CreateMXC(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	path := "/download/" + mxcPath(created.ContentURI) + "?timeout_ms=0"
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, body := mediaGet(t, s, alice, mediaV1, path)
		if status == 404 {
			wantError(t, status, body, 404, "M_NOT_FOUND")
			break
		}
		wantError(t, status, body, 504, "M_NOT_YET_UPLOADED")
		if time.Now().After(deadline) {
			t.Fatal("created media ID did not expire")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for the condition
	}
	status, _, body := do(t, "PUT", s.URL+mediaV3+"/upload/"+mxcPath(created.ContentURI), []byte("late"), bearer(alice)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")
}
