package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestMediaAdmin quarantines and deletes media through the Synapse-compatible admin API:
// by media ID and by user, with files removed once no media names their content.
func TestMediaAdmin(t *testing.T) {
	s := Start(t)
	admin := newAdminUser(t, s, "admin")
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	png := testPNG(t, 200, 100)
	a1 := uploadMedia(t, alice, png, "image/png", "a1.png")
	a2 := uploadMedia(t, alice, []byte("alice's second"), "text/plain", "")
	shared := []byte("the same bytes for alice and bob")
	a3 := uploadMedia(t, alice, shared, "text/plain", "")
	b1 := uploadMedia(t, bob, shared, "text/plain", "")
	// A thumbnail of a1, so that deleting a1 deletes it too.
	if status, _, _ := mediaGet(t, s, alice, mediaV1, "/thumbnail/"+mxcPath(a1)+"?width=32&height=32&method=crop"); status != 200 {
		t.Fatalf("thumbnail: %d", status)
	}
	if n := len(mediaFiles(t, s)); n != 4 {
		t.Fatalf("%d files, want 4 (a1, its thumbnail, a2, shared)", n)
	}

	adminCall := func(c *mautrix.Client, method, path string) (int, []byte) {
		t.Helper()
		status, _, body := do(t, method, s.URL+"/_synapse/admin/v1"+path, nil, bearer(c)...)
		return status, body
	}
	reachable := func(mxc id.ContentURI) bool {
		t.Helper()
		s1, _, _ := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(mxc))
		s2, _, _ := mediaGet(t, s, nil, mediaV3, "/download/"+mxcPath(mxc))
		s3, _, _ := mediaGet(t, s, alice, mediaV1, "/thumbnail/"+mxcPath(mxc)+"?width=32&height=32&method=crop")
		if (s1 == 200) != (s2 == 200) {
			t.Fatalf("%s: authenticated %d, legacy %d", mxc, s1, s2)
		}
		if s1 != 200 && (s1 != 404 || s3 != 404) {
			t.Fatalf("%s: unreachable media answers %d and %d, want 404", mxc, s1, s3)
		}
		return s1 == 200
	}

	// Only admins.
	for _, c := range []struct{ method, path string }{
		{"POST", "/media/quarantine/" + mxcPath(a1)}, {"POST", "/media/unquarantine/" + mxcPath(a1)},
		{"DELETE", "/media/" + mxcPath(a1)}, {"POST", "/user/" + url.PathEscape(string(alice.UserID)) + "/media/quarantine"},
		{"DELETE", "/users/" + url.PathEscape(string(alice.UserID)) + "/media"},
	} {
		status, body := adminCall(bob, c.method, c.path)
		wantError(t, status, body, 403, "M_FORBIDDEN")
		status, _, body = do(t, c.method, s.URL+"/_synapse/admin/v1"+c.path, nil)
		wantError(t, status, body, 401, "M_MISSING_TOKEN")
	}
	if !reachable(a1) {
		t.Fatal("a refused admin call changed a1")
	}

	// Quarantine of one item, and its release.
	status, body := adminCall(admin, "POST", "/media/quarantine/"+mxcPath(a1))
	wantOK(t, status, body, `{}`)
	if reachable(a1) || !reachable(a2) {
		t.Fatal("quarantine of a1")
	}
	status, body = adminCall(admin, "POST", "/media/unquarantine/"+mxcPath(a1))
	wantOK(t, status, body, `{}`)
	if !reachable(a1) {
		t.Fatal("a1 still quarantined")
	}
	status, body = adminCall(admin, "POST", "/media/quarantine/localhost/unknownMedia0123456789")
	wantError(t, status, body, 404, "M_NOT_FOUND")
	status, body = adminCall(admin, "POST", "/media/quarantine/localhost/..%2F..%2Fx")
	wantError(t, status, body, 404, "M_NOT_FOUND")

	// Quarantine of everything a user uploaded.
	status, body = adminCall(admin, "POST", "/user/"+url.PathEscape(string(alice.UserID))+"/media/quarantine")
	wantOK(t, status, body, `{"num_quarantined": 3}`)
	if reachable(a1) || reachable(a2) || reachable(a3) || !reachable(b1) {
		t.Fatal("quarantine of alice's media")
	}
	status, body = adminCall(admin, "POST", "/user/"+url.PathEscape("@x:other.example")+"/media/quarantine")
	wantError(t, status, body, 400, "M_INVALID_PARAM")
	for _, mxc := range []id.ContentURI{a1, a2, a3} {
		adminCall(admin, "POST", "/media/unquarantine/"+mxcPath(mxc))
	}

	// Deleting a1 removes it, its thumbnail and both files.
	status, body = adminCall(admin, "DELETE", "/media/"+mxcPath(a1))
	wantOK(t, status, body, `{"deleted_media": ["`+a1.FileID+`"], "total": 1}`)
	if reachable(a1) {
		t.Fatal("a1 still served")
	}
	if n := len(mediaFiles(t, s)); n != 2 {
		t.Fatalf("%d files after deleting a1, want 2", n)
	}
	status, body = adminCall(admin, "DELETE", "/media/"+mxcPath(a1))
	wantError(t, status, body, 404, "M_NOT_FOUND")
	status, body = adminCall(admin, "DELETE", "/media/other.example/"+a1.FileID)
	wantError(t, status, body, 400, "M_INVALID_PARAM")

	// Deleting alice's media keeps the file bob's upload shares.
	status, body = adminCall(admin, "DELETE", "/users/"+url.PathEscape(string(alice.UserID))+"/media")
	var del struct {
		Deleted []string `json:"deleted_media"`
		Total   int      `json:"total"`
	}
	if status != 200 || json.Unmarshal(body, &del) != nil || del.Total != 2 ||
		!slices.Equal(slices.Sorted(slices.Values(del.Deleted)), slices.Sorted(slices.Values([]string{a2.FileID, a3.FileID}))) {
		t.Fatalf("delete alice's media: %d %s", status, body)
	}
	if reachable(a2) || reachable(a3) || !reachable(b1) {
		t.Fatal("delete of alice's media")
	}
	if got, err := bob.DownloadBytes(ctx(t), b1); err != nil || !bytes.Equal(got, shared) {
		t.Fatalf("bob's media after alice's were deleted: %q %v", got, err)
	}
	if n := len(mediaFiles(t, s)); n != 1 {
		t.Fatalf("%d files after deleting alice's media, want 1", n)
	}
	status, body = adminCall(admin, "DELETE", "/users/"+url.PathEscape(string(bob.UserID))+"/media")
	wantOK(t, status, body, `{"deleted_media": ["`+b1.FileID+`"], "total": 1}`)
	if n := len(mediaFiles(t, s)); n != 0 {
		t.Fatalf("files left after every media item was deleted: %v", mediaFiles(t, s))
	}
}
