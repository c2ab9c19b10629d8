package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/mediastore"
	"github.com/latticehq/lattice/storage/storagetest"
)

// remoteServer stands in for other homeservers: it knows some media and counts fetches.
type remoteServer struct {
	media   map[string][]byte
	fetches atomic.Int32
}

func (f *remoteServer) FetchMedia(_ context.Context, server, mediaID string) (*RemoteMedia, error) {
	f.fetches.Add(1)
	data, ok := f.media[server+"/"+mediaID]
	if !ok {
		return nil, errors.New("remote: not found")
	}
	return &RemoteMedia{Body: io.NopCloser(bytes.NewReader(data)), ContentType: "text/plain", Filename: "r.txt"}, nil
}

func newTestMedia(t *testing.T, db *storage.DB, remote RemoteFetcher) *Media {
	t.Helper()
	cfg := config.Default("local.test").Media
	cfg.MaxUploadSize = 100
	m, err := New(context.Background(), Options{DB: db, ServerName: "local.test", Path: t.TempDir(), Config: cfg, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestRemoteMediaCached fetches remote media once through the fetcher and then finds it in
// the media table under its origin's server name and media ID.
func TestRemoteMediaCached(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		remote := &remoteServer{media: map[string][]byte{
			"remote.test/abc": []byte("remote bytes"),
			"remote.test/big": bytes.Repeat([]byte("x"), 101),
		}}
		m := newTestMedia(t, db, remote)
		ref := mediaRef{server: "remote.test", id: "abc"}
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				item, err := m.resolve(ctx, ref, fetchOptions{allowRemote: true})
				if err != nil || item.Size != 12 || item.Filename != "r.txt" || item.UserID != "" {
					t.Errorf("resolve: %+v, %v", item, err)
				}
			})
		}
		wg.Wait()
		if n := remote.fetches.Load(); n != 1 {
			t.Fatalf("%d fetches for one media item", n)
		}
		f, err := m.files.open(mustGet(t, m, ref).SHA256)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if string(got) != "remote bytes" {
			t.Fatalf("cached file holds %q", got)
		}

		for _, tc := range []struct {
			ref         mediaRef
			allowRemote bool
			status      int
			code        string
		}{
			{mediaRef{"remote.test", "unknown"}, true, 404, "M_NOT_FOUND"},
			{mediaRef{"remote.test", "big"}, true, 502, "M_TOO_LARGE"},
			{mediaRef{"remote.test", "other"}, false, 404, "M_NOT_FOUND"},
			{mediaRef{"local.test", "other"}, true, 404, "M_NOT_FOUND"},
		} {
			_, err := m.resolve(ctx, tc.ref, fetchOptions{allowRemote: tc.allowRemote})
			var e *httpapi.Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Errorf("%s: %v, want %d %s", tc.ref, err, tc.status, tc.code)
			}
		}
		if n := remote.fetches.Load(); n != 3 {
			t.Fatalf("%d fetches, want 3 (no fetch of local media or with allow_remote=false)", n)
		}
		// Without a fetcher, remote media is unknown.
		plain := newTestMedia(t, db, nil)
		if _, err := plain.resolve(ctx, mediaRef{"remote.test", "nope"}, fetchOptions{allowRemote: true}); err == nil {
			t.Fatal("remote media without a fetcher")
		}
	})
}

func mustGet(t *testing.T, m *Media, ref mediaRef) *mediastore.Media {
	t.Helper()
	item, err := m.store.Get(context.Background(), ref.server, ref.id)
	if err != nil {
		t.Fatal(err)
	}
	return item
}
