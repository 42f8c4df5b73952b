// Package capability signs and checks the capabilities that let storage
// nodes serve a file's chunks without asking meta (docs/security.md,
// DESIGN §4). Meta issues one after its permission checks on open, create
// and truncate; storage checks it on every chunk request. The key is a
// cluster secret that meta and storage nodes share: a file in each node's
// data directory (KeyFile), made when the cluster is created and copied to
// the nodes that join it, as the admin token is.
//
// A capability is a MAC, not a signature: whoever can check one can make
// one, which is right for nodes that are trusted with everything anyway
// (the threat model in docs/security.md) and costs about a microsecond.
package capability

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"fff/internal/proto"
)

// KeyFile is the key's file name in a node's data directory.
const KeyFile = "capability.key"

// KeySize is the size of a key in bytes.
const KeySize = 32

// DefaultTTL is how long a capability lasts unless configured otherwise:
// long enough that renewals cost meta nothing measurable, short enough
// that a chmod or a removed user reaches files already open within it.
const DefaultTTL = time.Hour

// macSize is the length of a capability's MAC: 128 bits of HMAC-SHA256.
const macSize = 16

// Key signs and checks capabilities. It is safe for concurrent use.
type Key struct {
	macs sync.Pool // of hash.Hash: HMAC-SHA256 under the key
}

// New returns the Key of secret (KeySize bytes).
func New(secret []byte) (*Key, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("capability key: %d bytes, want %d", len(secret), KeySize)
	}
	s := append([]byte(nil), secret...)
	k := &Key{}
	k.macs.New = func() any { return hmac.New(sha256.New, s) }
	return k, nil
}

// Generate returns a new random key's secret.
func Generate() ([]byte, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("capability key: %w", err)
	}
	return b, nil
}

// Create writes a new random key to path (mode 0600) unless a file is
// there already; it reports whether it made one. The file is opened
// without following a symlink and synced before it is used.
func Create(path string) (bool, error) {
	secret, err := Generate()
	if err != nil {
		return false, err
	}
	return Save(path, secret)
}

// Save writes the key secret to path as Create does, unless a file is there
// already; it reports whether it wrote one.
func Save(path string, secret []byte) (bool, error) {
	if len(secret) != KeySize {
		return false, fmt.Errorf("capability key: %d bytes, want %d", len(secret), KeySize)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("capability key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("capability key %s: %w", path, err)
	}
	return true, nil
}

// Load reads the key at path (LoadSecret).
func Load(path string) (*Key, error) {
	secret, err := LoadSecret(path)
	if err != nil {
		return nil, err
	}
	return New(secret)
}

// LoadSecret reads the secret of the key at path. It refuses a file that
// other users may read or write (as ssh refuses such a private key):
// whoever reads it can grant themselves any file's chunks.
func LoadSecret(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("capability key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("capability key: %w", err)
	}
	if st.Mode()&0o077 != 0 {
		return nil, fmt.Errorf("capability key %s has mode %04o: other users may read it; chmod 600 it (and make a new key if they may have)", path, st.Mode().Perm())
	}
	b := make([]byte, 256)
	n, err := f.Read(b)
	if err != nil {
		return nil, fmt.Errorf("capability key %s: %w", path, err)
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b[:n])))
	if err != nil || len(secret) != KeySize {
		return nil, fmt.Errorf("capability key %s: not a key (want %d bytes in base64 on one line)", path, KeySize)
	}
	return secret, nil
}

// Issue returns a capability granting uid access mode (proto.CapRead,
// CapWrite) to inode ino's chunks until expiry (ns since the epoch).
func (k *Key) Issue(ino uint64, mode uint8, uid uint32, expiry int64) proto.Capability {
	c := proto.Capability{Ino: ino, Mode: mode, UID: uid, Expiry: expiry}
	c.MAC = k.sum(&c, make([]byte, 0, sha256.Size))[:macSize]
	return c
}

// Check verifies that c is this key's capability granting uid the access
// in mode to inode ino at time now (ns since the epoch). A refusal is a
// proto.BadCapability error saying why.
func (k *Key) Check(c *proto.Capability, uid uint32, ino uint64, mode uint8, now int64) error {
	switch {
	case c == nil:
		return proto.Errorf(proto.BadCapability, "no capability for inode %d", ino)
	case c.Ino != ino:
		return proto.Errorf(proto.BadCapability, "capability for inode %d used for inode %d", c.Ino, ino)
	case c.Mode&mode != mode:
		return proto.Errorf(proto.BadCapability, "capability for inode %d does not grant %s", ino, modeString(mode))
	case c.UID != uid:
		return proto.Errorf(proto.BadCapability, "capability for inode %d was issued to uid %d, not %d", ino, c.UID, uid)
	case now > c.Expiry:
		return proto.Errorf(proto.BadCapability, "capability for inode %d expired", ino)
	}
	var buf [sha256.Size]byte
	if len(c.MAC) != macSize || !hmac.Equal(k.sum(c, buf[:0])[:macSize], c.MAC) {
		return proto.Errorf(proto.BadCapability, "capability for inode %d is not this cluster's (forged, or signed with another key)", ino)
	}
	return nil
}

// sum appends the HMAC of c's fields to b.
func (k *Key) sum(c *proto.Capability, b []byte) []byte {
	var msg [8 + 8 + 1 + 4 + 8]byte
	copy(msg[:8], "fffcap01") // the format: a new one gets a new tag
	binary.LittleEndian.PutUint64(msg[8:], c.Ino)
	msg[16] = c.Mode
	binary.LittleEndian.PutUint32(msg[17:], c.UID)
	binary.LittleEndian.PutUint64(msg[21:], uint64(c.Expiry))
	h := k.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(msg[:])
	b = h.Sum(b)
	k.macs.Put(h)
	return b
}

func modeString(mode uint8) string {
	switch mode {
	case proto.CapRead:
		return "read"
	case proto.CapWrite:
		return "write"
	}
	return "read and write"
}
