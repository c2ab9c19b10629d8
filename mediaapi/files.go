package mediaapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// errTooLarge is returned by stage when the content is longer than its limit.
var errTooLarge = errors.New("content too large")

// readError wraps a failure to read the content being stored (the client's body, a remote
// download), as opposed to a failure of our own disk.
type readError struct{ err error }

func (e *readError) Error() string { return "read content: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// files is the folder of media files. Each file is named by the SHA-256 of its content only
// (root/ab/cd/abcd…), never by anything a client sent, so equal content is stored once and no
// request can name a path of its own. New content is written to root/tmp first, synced, and
// renamed into place.
//
// A file may be removed only when no database row names its hash; the hash locks make "place
// the file and insert its row" and "delete the row, count the rest and remove the file" two
// steps that never interleave for one hash.
type files struct {
	root  string
	locks [64]sync.Mutex // striped by hash: hashLock
}

// openFiles creates the folder if needed and clears temporary files a crash left behind.
func openFiles(root string) (*files, error) {
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("create media folder: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("read media folder: %w", err)
	}
	for _, e := range entries {
		_ = os.Remove(filepath.Join(root, "tmp", e.Name())) // half-written uploads of a crashed run
	}
	return &files{root: root}, nil
}

// hashLock returns the lock of a file hash (hex).
func (f *files) hashLock(hash string) *sync.Mutex {
	var b byte
	if len(hash) >= 2 {
		if v, err := hex.DecodeString(hash[:2]); err == nil {
			b = v[0]
		}
	}
	return &f.locks[int(b)%len(f.locks)]
}

// path is where the file of a hash lives. hash comes from our own database or hashing, and is
// checked once more so that a corrupt row cannot point outside the folder.
func (f *files) path(hash string) (string, error) {
	if len(hash) != sha256.Size*2 {
		return "", fmt.Errorf("bad content hash %q", hash)
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return "", fmt.Errorf("bad content hash %q", hash)
	}
	return filepath.Join(f.root, hash[:2], hash[2:4], hash), nil
}

// staged is content written to a temporary file, hashed and synced, not yet in place.
type staged struct {
	tmp  string
	hash string
	size int64
}

// stage copies r to a temporary file while hashing it, refusing more than limit bytes
// (errTooLarge), and syncs it to disk. Only a fixed-size buffer is held in memory. Failures
// to read r come back as *readError; the temporary file is gone after any error.
func (f *files) stage(r io.Reader, limit int64) (*staged, error) {
	var rnd [12]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(f.root, "tmp", hex.EncodeToString(rnd[:]))
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create temporary media file: %w", err)
	}
	fail := func(err error) (*staged, error) {
		out.Close()
		os.Remove(tmp)
		return nil, err
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var size int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			size += int64(n)
			if size > limit {
				return fail(errTooLarge)
			}
			h.Write(buf[:n])
			if _, err := out.Write(buf[:n]); err != nil {
				return fail(fmt.Errorf("write media file: %w", err))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(&readError{rerr})
		}
	}
	// Sync before the rename: once the row is committed and 200 answered, the bytes must be
	// on disk even if the process or machine dies right after.
	if err := out.Sync(); err != nil {
		return fail(fmt.Errorf("sync media file: %w", err))
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("close media file: %w", err)
	}
	return &staged{tmp: tmp, hash: hex.EncodeToString(h.Sum(nil)), size: size}, nil
}

// discard removes a staged file that will not be placed.
func (f *files) discard(s *staged) {
	if s != nil {
		os.Remove(s.tmp)
	}
}

// place moves a staged file to its hash's path, or drops it when that content is stored
// already. The caller holds the hash's lock.
func (f *files) place(s *staged) error {
	dst, err := f.path(s.hash)
	if err != nil {
		f.discard(s)
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		f.discard(s) // the same bytes are stored already
		return nil
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.discard(s)
		return fmt.Errorf("create media folder: %w", err)
	}
	if err := os.Rename(s.tmp, dst); err != nil {
		f.discard(s)
		return fmt.Errorf("move media file into place: %w", err)
	}
	// Sync the folder so that the rename itself survives a crash.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync media folder: %w", err)
		}
	}
	return nil
}

// open opens the file of a hash for reading.
func (f *files) open(hash string) (*os.File, error) {
	p, err := f.path(hash)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// remove deletes the file of a hash; a file already gone is no error. The caller holds the
// hash's lock and has checked that no row names the hash.
func (f *files) remove(hash string) error {
	p, err := f.path(hash)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove media file: %w", err)
	}
	return nil
}

// openStaged opens a staged file for reading before it is placed.
func openStaged(s *staged) (*os.File, error) { return os.Open(s.tmp) }
