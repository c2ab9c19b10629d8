package userapi

import (
	"context"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// benchUsers opens a fresh database of engine with one logged-in device and returns its token.
func benchUsers(b *testing.B, engine storage.Engine) (*Users, string) {
	b.Helper()
	db, err := storage.Open(context.Background(), storagetest.DSN(b, engine), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	u, _ := newUsers(b, db, Options{})
	alice := mustAccount(b, u, "alice", "").UserID
	_, toks := mustLogin(b, u, NewDevice{UserID: alice})
	return u, toks.AccessToken
}

// BenchmarkQueryAccessTokenCached is the token check on every authenticated request, as it
// runs almost always: a hash and a map lookup.
func BenchmarkQueryAccessTokenCached(b *testing.B) {
	for _, engine := range storagetest.Engines() {
		b.Run(string(engine), func(b *testing.B) {
			u, token := benchUsers(b, engine)
			ctx := context.Background()
			if _, err := u.QueryAccessToken(ctx, token); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := u.QueryAccessToken(ctx, token); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkQueryAccessTokenUncached is the same check when the cache cannot answer: one query.
func BenchmarkQueryAccessTokenUncached(b *testing.B) {
	for _, engine := range storagetest.Engines() {
		b.Run(string(engine), func(b *testing.B) {
			u, token := benchUsers(b, engine)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				u.cache.invalidateUser("@alice:test.local")
				if _, err := u.QueryAccessToken(ctx, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
