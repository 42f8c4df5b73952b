package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"fff/internal/proto"
	"fff/libfff"
)

// TestConcurrentCreateOneWinner: 64 goroutines over several connections
// create the same name; exactly one succeeds, every other gets EEXIST.
func TestConcurrentCreateOneWinner(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	clients := make([]*libfff.Client, 8)
	for i := range clients {
		clients[i] = cl.admin(t)
	}
	kinds := []struct {
		name   string
		create func(c *libfff.Client, p string) error
	}{
		{"file", func(c *libfff.Client, p string) error { _, err := c.CreateFile(ctx, p, 0o644); return err }},
		{"dir", func(c *libfff.Client, p string) error { return c.Mkdir(ctx, p, 0o755) }},
		{"symlink", func(c *libfff.Client, p string) error { return c.Symlink(ctx, "target", p) }},
	}
	for _, kind := range kinds {
		for round := 0; round < 3; round++ {
			p := fmt.Sprintf("/race-%s-%d", kind.name, round)
			const workers = 64
			var wins, exists atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for g := 0; g < workers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					err := kind.create(clients[g%len(clients)], p)
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, proto.ErrExist) && errors.Is(err, fs.ErrExist):
						exists.Add(1)
					default:
						t.Errorf("%s: %v", p, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 || exists.Load() != workers-1 {
				t.Fatalf("%s: %d creates succeeded and %d got EEXIST, want 1 and %d", p, wins.Load(), exists.Load(), workers-1)
			}
		}
	}
	es, err := clients[0].ReadDir(ctx, "/")
	if err != nil || len(es) != len(kinds)*3 {
		t.Fatalf("root holds %d entries (%v), want %d", len(es), err, len(kinds)*3)
	}
}

// TestConcurrentRenames: goroutines shuffle files between directories,
// racing for the same files. Afterwards every file is in exactly one
// directory, under its own name, with its own inode: nothing lost, nothing
// duplicated.
func TestConcurrentRenames(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	admin := cl.admin(t)
	const dirs, files, workers, moves = 5, 100, 16, 60
	inos := map[string]uint64{}
	for d := 0; d < dirs; d++ {
		if err := admin.Mkdir(ctx, fmt.Sprintf("/d%d", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f := 0; f < files; f++ {
		name := fmt.Sprintf("f%03d", f)
		fi, err := admin.CreateFile(ctx, fmt.Sprintf("/d%d/%s", f%dirs, name), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		inos[name] = fi.Ino()
	}
	before, err := admin.StatFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*libfff.Client, 4)
	for i := range clients {
		clients[i] = cl.admin(t)
	}
	var moved, missed atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < moves; i++ {
				// A small set of hot files, so that workers collide.
				name := fmt.Sprintf("f%03d", rng.IntN(files/4))
				from, to := rng.IntN(dirs), rng.IntN(dirs)
				if from == to {
					to = (to + 1) % dirs
				}
				err := c.Rename(ctx, fmt.Sprintf("/d%d/%s", from, name), fmt.Sprintf("/d%d/%s", to, name))
				switch {
				case err == nil:
					moved.Add(1)
				case errors.Is(err, fs.ErrNotExist): // not there (any more)
					missed.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if moved.Load() == 0 {
		t.Fatalf("no rename succeeded (%d missed)", missed.Load())
	}
	seen := map[string]string{}
	for d := 0; d < dirs; d++ {
		dir := fmt.Sprintf("/d%d", d)
		es, err := admin.ReadDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if prev, dup := seen[e.Name()]; dup {
				t.Errorf("%s is in %s and %s", e.Name(), prev, dir)
			}
			seen[e.Name()] = dir
			if want, ok := inos[e.Name()]; !ok || e.Ino() != want {
				t.Errorf("%s/%s has inode %d, want %d", dir, e.Name(), e.Ino(), want)
			}
		}
	}
	if len(seen) != files {
		t.Errorf("%d files found after the renames, want %d", len(seen), files)
	}
	after, err := admin.StatFS(ctx)
	if err != nil || after.Inodes != before.Inodes {
		t.Errorf("inodes in use went from %d to %d (%v)", before.Inodes, after.Inodes, err)
	}
	t.Logf("%d renames succeeded, %d found their file gone", moved.Load(), missed.Load())
}

// TestConcurrentDirRenamesNoLoops: goroutines move directories into each
// other (/ai → /aj/ai, and back). Serializable renames must never let two
// directories end up inside each other: afterwards every directory is
// reachable from the root exactly once.
func TestConcurrentDirRenamesNoLoops(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	admin := cl.admin(t)
	const dirs, workers, moves = 8, 16, 40
	for i := 0; i < dirs; i++ {
		if err := admin.Mkdir(ctx, fmt.Sprintf("/a%d", i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var moved atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for k := 0; k < moves; k++ {
				i, j := rng.IntN(dirs), rng.IntN(dirs)
				if i == j {
					continue
				}
				src, dst := fmt.Sprintf("/a%d", i), fmt.Sprintf("/a%d/a%d", j, i)
				if k%2 == 1 {
					src, dst = dst, src
				}
				err := admin.Rename(ctx, src, dst)
				switch {
				case err == nil:
					moved.Add(1)
				case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrInvalid):
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if moved.Load() == 0 {
		t.Fatal("no rename succeeded")
	}
	found := 0
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		if depth > dirs {
			t.Fatalf("%s: deeper than the number of directories", p)
		}
		es, err := admin.ReadDir(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			found++
			walk(p+"/"+e.Name(), depth+1)
		}
	}
	walk("", 0)
	st, err := admin.StatFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if found != dirs || st.Inodes != dirs+1 {
		t.Fatalf("%d directories reachable from the root, %d inodes in use; want %d and %d", found, st.Inodes, dirs, dirs+1)
	}
	t.Logf("%d directory renames succeeded", moved.Load())
}
