package mediastore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func open(t *testing.T, db *storage.DB) *Store {
	t.Helper()
	s, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func uploaded(id, user, hash string) Media {
	return Media{ServerName: "x", MediaID: id, SHA256: hash, Size: 3, ContentType: "text/plain", Filename: "a.txt",
		UserID: user, CreatedTS: 10, UploadedTS: 10, LegacyAccess: true}
}

func TestInsertGetDelete(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := open(t, db)
		m := uploaded("a", "@u:x", "h1")
		if err := s.Insert(ctx, m); err != nil {
			t.Fatal(err)
		}
		if err := s.Insert(ctx, m); !errors.Is(err, ErrExists) {
			t.Fatalf("second insert: %v", err)
		}
		got, err := s.Get(ctx, "x", "a")
		if err != nil || *got != m {
			t.Fatalf("get: %+v, %v; want %+v", got, err, m)
		}
		if _, err := s.Get(ctx, "y", "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other server: %v", err)
		}
		// A second item with the same content, and thumbnails sharing and not sharing its hash.
		if err := s.Insert(ctx, uploaded("b", "@u:x", "h1")); err != nil {
			t.Fatal(err)
		}
		for _, th := range []Thumbnail{
			{ServerName: "x", MediaID: "a", Method: "crop", ReqWidth: 32, ReqHeight: 32, Width: 32, Height: 32, SHA256: "t1", Size: 5, ContentType: "image/png", CreatedTS: 1},
			{ServerName: "x", MediaID: "a", Method: "scale", ReqWidth: 320, ReqHeight: 240, Width: 3, Height: 1, SHA256: "h1", Size: 3, ContentType: "image/png", CreatedTS: 1},
		} {
			if err := s.PutThumbnail(ctx, th); err != nil {
				t.Fatal(err)
			}
		}
		// A second thumbnail for the same size keeps the first.
		dup := Thumbnail{ServerName: "x", MediaID: "a", Method: "crop", ReqWidth: 32, ReqHeight: 32, Width: 1, Height: 1, SHA256: "other", ContentType: "image/png"}
		if err := s.PutThumbnail(ctx, dup); err != nil {
			t.Fatal(err)
		}
		th, err := s.Thumbnail(ctx, "x", "a", "crop", 32, 32)
		if err != nil || th.SHA256 != "t1" || th.Width != 32 {
			t.Fatalf("thumbnail: %+v, %v", th, err)
		}
		if _, err := s.Thumbnail(ctx, "x", "a", "crop", 96, 96); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing thumbnail: %v", err)
		}
		if err := s.PutThumbnail(ctx, Thumbnail{ServerName: "x", MediaID: "gone", Method: "crop", SHA256: "t9"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("thumbnail of missing media: %v", err)
		}
		if n := refs(t, s, "h1"); n != 3 {
			t.Fatalf("h1 has %d references, want 3", n)
		}
		hashes, err := s.Delete(ctx, "x", "a")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(slices.Sorted(slices.Values(hashes))) != "[h1 t1]" {
			t.Fatalf("deleted hashes %v", hashes)
		}
		if n := refs(t, s, "h1"); n != 1 {
			t.Fatalf("h1 has %d references after delete, want 1 (media b)", n)
		}
		if n := refs(t, s, "t1"); n != 0 {
			t.Fatalf("t1 has %d references after delete", n)
		}
		if _, err := s.Delete(ctx, "x", "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		if _, err := s.Thumbnail(ctx, "x", "a", "crop", 32, 32); !errors.Is(err, ErrNotFound) {
			t.Fatalf("thumbnail survived its media: %v", err)
		}
	})
}

func refs(t *testing.T, s *Store, hash string) int {
	t.Helper()
	n, err := s.HashRefs(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPendingUploads(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := open(t, db)
		pending := func(id string, expires int64) Media {
			return Media{ServerName: "x", MediaID: id, ContentType: "", UserID: "@u:x", CreatedTS: 100, ExpiresTS: expires, LegacyAccess: true}
		}
		for i, exp := range []int64{1000, 1000, 150} {
			if err := s.CreatePending(ctx, pending(fmt.Sprint("p", i), exp), 3, 100); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreatePending(ctx, pending("p3", 1000), 3, 100); !errors.Is(err, ErrTooManyPending) {
			t.Fatalf("fourth pending: %v", err)
		}
		// Another user has a limit of their own; an expired ID no longer counts.
		other := pending("q0", 1000)
		other.UserID = "@v:x"
		if err := s.CreatePending(ctx, other, 3, 100); err != nil {
			t.Fatal(err)
		}
		if err := s.CreatePending(ctx, pending("p3", 1000), 3, 200); err != nil {
			t.Fatalf("pending after one expired: %v", err)
		}
		got, err := s.Get(ctx, "x", "p0")
		if err != nil || !got.Pending() || got.SHA256 != "" {
			t.Fatalf("pending item: %+v, %v", got, err)
		}
		done := uploaded("p0", "@u:x", "h")
		done.UploadedTS = 300
		done.LegacyAccess = false
		if err := s.Complete(ctx, done, 300); err != nil {
			t.Fatal(err)
		}
		if err := s.Complete(ctx, done, 300); !errors.Is(err, ErrUploaded) {
			t.Fatalf("second complete: %v", err)
		}
		got, err = s.Get(ctx, "x", "p0")
		if err != nil || got.Pending() || got.SHA256 != "h" || got.UploadedTS != 300 || got.ExpiresTS != 0 || got.LegacyAccess || got.Filename != "a.txt" {
			t.Fatalf("completed item: %+v, %v", got, err)
		}
		expired := uploaded("p2", "@u:x", "h")
		if err := s.Complete(ctx, expired, 300); !errors.Is(err, ErrNotFound) {
			t.Fatalf("complete of an expired ID: %v", err)
		}
		if err := s.Complete(ctx, uploaded("nope", "@u:x", "h"), 300); !errors.Is(err, ErrNotFound) {
			t.Fatalf("complete of an unknown ID: %v", err)
		}
		n, err := s.DeleteExpiredPending(ctx, 300)
		if err != nil || n != 1 {
			t.Fatalf("deleted %d expired, %v; want 1", n, err)
		}
		if _, err := s.Get(ctx, "x", "p2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired ID kept: %v", err)
		}
		if _, err := s.Get(ctx, "x", "p0"); err != nil {
			t.Fatalf("uploaded item deleted with the expired ones: %v", err)
		}
	})
}

// TestCompleteRace uploads to one created media ID from many goroutines: exactly one wins.
func TestCompleteRace(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := open(t, db)
		if err := s.CreatePending(ctx, Media{ServerName: "x", MediaID: "p", UserID: "@u:x", ExpiresTS: 1000}, 1, 0); err != nil {
			t.Fatal(err)
		}
		var wins, lost atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				m := uploaded("p", "@u:x", fmt.Sprint("h", i))
				switch err := s.Complete(ctx, m, 1); {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, ErrUploaded):
					lost.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || lost.Load() != 7 {
			t.Fatalf("%d wins, %d refused; want 1 and 7", wins.Load(), lost.Load())
		}
	})
}

func TestQuarantineAndUserMedia(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := open(t, db)
		for i, u := range []string{"@u:x", "@u:x", "@v:x"} {
			m := uploaded(fmt.Sprint("m", i), u, fmt.Sprint("h", i))
			m.CreatedTS = int64(10 - i)
			if err := s.Insert(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetQuarantined(ctx, "x", "m2", true); err != nil {
			t.Fatal(err)
		}
		if err := s.SetQuarantined(ctx, "x", "nope", true); !errors.Is(err, ErrNotFound) {
			t.Fatalf("quarantine unknown: %v", err)
		}
		if m, _ := s.Get(ctx, "x", "m2"); !m.Quarantined {
			t.Fatal("m2 not quarantined")
		}
		n, err := s.QuarantineUser(ctx, "@u:x", true)
		if err != nil || n != 2 {
			t.Fatalf("quarantined %d of @u:x, %v", n, err)
		}
		if n, _ := s.QuarantineUser(ctx, "@u:x", true); n != 0 {
			t.Fatalf("quarantined again: %d", n)
		}
		list, err := s.UserMedia(ctx, "@u:x", 10)
		if err != nil || len(list) != 2 || list[0].MediaID != "m1" || !list[0].Quarantined {
			t.Fatalf("media of @u:x: %+v, %v", list, err)
		}
		if list, _ := s.UserMedia(ctx, "@u:x", 1); len(list) != 1 {
			t.Fatalf("limit 1 gave %d", len(list))
		}
		if n, _ := s.QuarantineUser(ctx, "@u:x", false); n != 2 {
			t.Fatalf("released %d", n)
		}
	})
}

func TestPreviews(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := open(t, db)
		if _, err := s.Preview(ctx, "https://a/", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("empty cache: %v", err)
		}
		if err := s.PutPreview(ctx, "https://a/", 1, []byte(`{"og:title":"A"}`), 100); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPreview(ctx, "https://a/", 1, []byte(`{"og:title":"B"}`), 200); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPreview(ctx, "https://a/", 2, []byte(`{}`), 300); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Preview(ctx, "https://a/", 1); err != nil || string(p) != `{"og:title":"B"}` {
			t.Fatalf("preview: %s, %v", p, err)
		}
		if n, err := s.DeletePreviewsBefore(ctx, 250); err != nil || n != 1 {
			t.Fatalf("deleted %d old previews, %v", n, err)
		}
		if _, err := s.Preview(ctx, "https://a/", 2); err != nil {
			t.Fatalf("new preview deleted: %v", err)
		}
	})
}
