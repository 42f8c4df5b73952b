package tests

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The ring transport (FUSE over io_uring, libfff/fusefs/ring.go) beyond
// what every mount test checks on both transports: that the rings are in
// use, many openers at once, unmounting while busy, and kill -9 of the
// mount process and of fffd while requests are under way.

// mountLog returns the log of mount m.
func (m *mount) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(m.dir), "mount.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFUSEURingInUse: a mount with --transport uring serves through the
// rings (its log says so) and one with --transport dev through /dev/fuse;
// both see the same files.
func TestFUSEURingInUse(t *testing.T) {
	needFUSE(t)
	needURing(t)
	c := startClusterAt(t)
	ring := mountCluster(t, c, "--transport", "uring")
	dev := mountCluster(t, c, "--transport", "dev")
	if l := ring.log(t); !strings.Contains(l, "serving through the rings") || !strings.Contains(l, "transport=uring") {
		t.Fatalf("the uring mount's log does not say it uses the rings:\n%s", l)
	}
	if l := dev.log(t); !strings.Contains(l, "transport=dev") || strings.Contains(l, "rings") {
		t.Fatalf("the dev mount's log:\n%s", l)
	}
	data := randData(rand.New(rand.NewPCG(1, 8)), 3<<20+17)
	if err := os.WriteFile(filepath.Join(ring.dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dev.dir, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the dev mount reads %d bytes of the file the ring mount wrote (%v)", len(got), err)
	}
}

// TestFUSEConcurrentOpeners: 64 goroutines create, write, reopen and read
// their own files and open one shared file at the same time, more than a
// queue has entries.
func TestFUSEConcurrentOpeners(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c)
	shared := randData(rand.New(rand.NewPCG(2, 8)), 300_000)
	if err := os.WriteFile(filepath.Join(m.dir, "shared"), shared, 0o644); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 64, 5
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for i := range rounds {
				p := filepath.Join(m.dir, fmt.Sprintf("w%d-%d", w, i))
				data := randData(r, 1+r.IntN(200_000))
				if err := os.WriteFile(p, data, 0o644); err != nil {
					errs <- err
					return
				}
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s: read %d of %d bytes back (%v)", p, len(got), len(data), err)
					return
				}
				if got, err := os.ReadFile(filepath.Join(m.dir, "shared")); err != nil || !bytes.Equal(got, shared) {
					errs <- fmt.Errorf("shared: read %d bytes (%v)", len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil || len(ents) != workers*rounds+1 {
		t.Fatalf("%d entries after the run (%v), want %d", len(ents), err, workers*rounds+1)
	}
}

// TestFUSEUnmountBusy: fff umount of a mount with a file open is refused
// and changes nothing; --lazy detaches it, the open file still reads, and
// the mount process ends once it is closed.
func TestFUSEUnmountBusy(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c)
	data := randData(rand.New(rand.NewPCG(3, 8)), 1<<20)
	p := filepath.Join(m.dir, "open")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pid := m.pid(t)
	if r := fff(t, m.env, "umount", "--timeout", "5s", m.dir); r.code == 0 {
		t.Fatal("fff umount of a busy mount succeeded")
	}
	if !mounted(m.dir) {
		t.Fatal("a refused fff umount unmounted")
	}
	if r := fff(t, m.env, "umount", "--lazy", "--timeout", "1s", m.dir); mounted(m.dir) {
		t.Fatalf("still mounted after fff umount --lazy (exit %d: %s)", r.code, r.stderr)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading the open file after the lazy unmount: %v", err)
	}
	f.Close()
	waitExit(t, pid)
}

// waitExit waits (30 s at most) until process pid has exited.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return
		}
		// A zombie is gone too: the daemon's parent has exited.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
	}
	t.Fatalf("process %d still runs", pid)
}

// readLoop reads path over and over until stop is closed, checking it
// against want, and reports the first read error (nil if none).
func readLoop(path string, want []byte, stop <-chan struct{}) <-chan error {
	res := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				res <- nil
				return
			default:
			}
			got, err := os.ReadFile(path)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("read %d bytes that differ from the %d written", len(got), len(want))
			}
			if err != nil {
				res <- err
				return
			}
		}
	}()
	return res
}

// startReaders writes file f of 2 MiB (random, from seed) into m and
// starts 8 readLoops of it, under way when it returns.
func startReaders(t *testing.T, m *mount, seed uint64) (data []byte, stop chan struct{}, loops []<-chan error) {
	t.Helper()
	data = randData(rand.New(rand.NewPCG(seed, 8)), 2<<20)
	if err := os.WriteFile(filepath.Join(m.dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	stop = make(chan struct{})
	for range 8 {
		loops = append(loops, readLoop(filepath.Join(m.dir, "f"), data, stop))
	}
	time.Sleep(200 * time.Millisecond)
	return data, stop, loops
}

// TestFUSEKillMountUnderLoad: kill -9 of the mount process while readers
// are busy fails their reads (no hang); fff umount clears the
// dead mount and a new mount on the same directory serves the data.
func TestFUSEKillMountUnderLoad(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c, "--direct-io") // every read reaches the mount
	data, stop, loops := startReaders(t, m, 4)
	syscall.Kill(m.pid(t), syscall.SIGKILL)
	for _, l := range loops {
		select {
		case err := <-l:
			// A request the dead mount held fails as the kernel ends
			// it: ENOTCONN, or with the rings ECONNABORTED or
			// ECANCELED; the next one with ENOTCONN.
			if !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) && !errors.Is(err, syscall.ECANCELED) {
				t.Errorf("a reader after kill -9 of the mount: %v, want ENOTCONN", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a reader hangs after kill -9 of the mount")
		}
	}
	close(stop)
	mustFFF(t, m.env, "umount", m.dir)
	if mounted(m.dir) {
		t.Fatal("dead mount still mounted after fff umount")
	}
	again := mountCluster(t, c)
	if got, err := os.ReadFile(filepath.Join(again.dir, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a new mount reads %d bytes (%v)", len(got), err)
	}
}

// TestFUSEKillFffdUnderLoad: kill -9 of fffd while readers are busy and
// a restart on the same address a moment later: every read waits and
// returns the right bytes.
func TestFUSEKillFffdUnderLoad(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c, "--direct-io", "--retry-timeout", "60s")
	_, stop, loops := startReaders(t, m, 5)
	addr := c.addr
	c.kill(t)
	time.Sleep(300 * time.Millisecond)
	c.startListen(t, addr)
	time.Sleep(300 * time.Millisecond) // reads after the restart
	close(stop)
	for _, l := range loops {
		select {
		case err := <-l:
			if err != nil {
				t.Errorf("a reader across kill -9 of fffd: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("a reader hangs after fffd came back")
		}
	}
}
