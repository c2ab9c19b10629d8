package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

// GenerateSigningKey makes a new ed25519 signing key with a random key version "a_XXXX".
func GenerateSigningKey() (*federation.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	// Key versions are limited to [a-zA-Z0-9_] (server-server keys schema), so no base64url here.
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	version := []byte("a_")
	for _, b := range priv.Seed()[:4] {
		version = append(version, alphabet[int(b)%len(alphabet)])
	}
	return &federation.SigningKey{
		ID:   id.NewKeyID(id.KeyAlgorithmEd25519, string(version)),
		Pub:  id.SigningKey(base64.RawStdEncoding.EncodeToString(pub)),
		Priv: priv,
	}, nil
}

// WriteSigningKey writes key to a new file at path, readable only by its owner. It never
// overwrites: losing a signing key breaks federation with servers that cached it.
func WriteSigningKey(path string, key *federation.SigningKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create folder for signing key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if _, err := f.WriteString(key.SynapseString() + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write signing key %s: %w", path, err)
	}
	return f.Close()
}

// LoadSigningKey reads a signing key file written by WriteSigningKey (or by Synapse).
func LoadSigningKey(path string) (*federation.SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key, err := ParseSigningKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}

// ParseSigningKey parses the "ed25519 <version> <base64 seed>" form; only the first line counts.
func ParseSigningKey(s string) (*federation.SigningKey, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	parts := strings.Fields(line)
	if len(parts) != 3 {
		return nil, errors.New(`want "ed25519 <version> <base64 seed>"`)
	}
	for _, c := range parts[1] {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return nil, fmt.Errorf("key version %q may only hold a-z, A-Z, 0-9 and _", parts[1])
		}
	}
	// ParseSynapseKey hands the seed to ed25519.NewKeyFromSeed, which panics on a wrong length.
	parts[2] = strings.TrimRight(parts[2], "=")
	seed, err := base64.RawStdEncoding.DecodeString(parts[2])
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("the seed is not 32 bytes of unpadded base64")
	}
	return federation.ParseSynapseKey(strings.Join(parts, " "))
}
