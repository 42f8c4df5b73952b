package capability

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fff/internal/proto"
)

func testKey(t *testing.T) *Key {
	t.Helper()
	s, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCheck: a capability passes only for its inode, an access it grants,
// its uid, before its expiry, and with its own key's untouched MAC.
func TestCheck(t *testing.T) {
	k, other := testKey(t), testKey(t)
	const now = 1_000
	good := k.Issue(7, proto.CapRead|proto.CapWrite, 1000, now+10)
	ro := k.Issue(7, proto.CapRead, 1000, now+10)
	flip := func(c proto.Capability) *proto.Capability {
		c.MAC = append([]byte(nil), c.MAC...)
		c.MAC[3] ^= 1
		return &c
	}
	edit := func(f func(*proto.Capability)) *proto.Capability {
		c := good
		f(&c)
		return &c
	}
	foreign := other.Issue(7, proto.CapRead|proto.CapWrite, 1000, now+10)
	tests := []struct {
		name string
		cap  *proto.Capability
		uid  uint32
		ino  uint64
		mode uint8
		want string // "" for success, else a piece of the refusal
	}{
		{"read", &good, 1000, 7, proto.CapRead, ""},
		{"write", &good, 1000, 7, proto.CapWrite, ""},
		{"read with read-only", &ro, 1000, 7, proto.CapRead, ""},
		{"at expiry", edit(func(c *proto.Capability) {}), 1000, 7, proto.CapRead, ""},
		{"missing", nil, 1000, 7, proto.CapRead, "no capability"},
		{"other inode", &good, 1000, 8, proto.CapRead, "used for inode 8"},
		{"write with read-only", &ro, 1000, 7, proto.CapWrite, "does not grant write"},
		{"other uid", &good, 1001, 7, proto.CapRead, "issued to uid 1000"},
		{"expired", k.ptr(k.Issue(7, proto.CapRead, 1000, now-1)), 1000, 7, proto.CapRead, "expired"},
		{"flipped MAC", flip(good), 1000, 7, proto.CapRead, "not this cluster's"},
		{"short MAC", edit(func(c *proto.Capability) { c.MAC = c.MAC[:8] }), 1000, 7, proto.CapRead, "not this cluster's"},
		{"no MAC", edit(func(c *proto.Capability) { c.MAC = nil }), 1000, 7, proto.CapRead, "not this cluster's"},
		{"widened mode", k.ptr(func() proto.Capability { c := ro; c.Mode |= proto.CapWrite; return c }()), 1000, 7, proto.CapWrite, "not this cluster's"},
		{"extended expiry", edit(func(c *proto.Capability) { c.Expiry += 1 << 40 }), 1000, 7, proto.CapRead, "not this cluster's"},
		{"moved to another inode", edit(func(c *proto.Capability) { c.Ino = 9 }), 1000, 9, proto.CapRead, "not this cluster's"},
		{"given to another uid", edit(func(c *proto.Capability) { c.UID = 1001 }), 1001, 7, proto.CapRead, "not this cluster's"},
		{"other cluster's key", &foreign, 1000, 7, proto.CapRead, "not this cluster's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := k.Check(tt.cap, tt.uid, tt.ino, tt.mode, now+10)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, proto.ErrBadCapability) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want BadCapability with %q", err, tt.want)
			}
		})
	}
}

func (k *Key) ptr(c proto.Capability) *proto.Capability { return &c }

// TestKeyFile: Create makes a private key once; Load reads it back (the
// same key: capabilities of one check with the other) and refuses a file
// other users may read, a symlink, and garbage.
func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFile)
	made, err := Create(path)
	if err != nil || !made {
		t.Fatalf("Create: %v %v", made, err)
	}
	before, _ := os.ReadFile(path)
	if made, err := Create(path); err != nil || made {
		t.Fatalf("second Create: %v %v", made, err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("second Create replaced the key")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	k1, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c := k1.Issue(3, proto.CapRead, 5, 100)
	if err := k2.Check(&c, 5, 3, proto.CapRead, 50); err != nil {
		t.Fatalf("the loaded key does not check its own capability: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	os.Chmod(path, 0o600)
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); err == nil {
		t.Fatal("loaded a key through a symlink")
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not base64 at all\n"), 0o600)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "not a key") {
		t.Fatalf("garbage key: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key: %v", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	s, _ := Generate()
	k, _ := New(s)
	c := k.Issue(7, proto.CapRead, 1000, 1<<62)
	b.ReportAllocs()
	for b.Loop() {
		if err := k.Check(&c, 1000, 7, proto.CapRead, 1); err != nil {
			b.Fatal(err)
		}
	}
}
