package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/libfff"

	"golang.org/x/sys/unix"
)

// netLab is a private network the test builds: a bridge in this network
// namespace (the control node and the test's clients use its address) and
// one network namespace per storage node, each joined to the bridge by a
// veth pair whose host end the test can take down — cutting that node off
// from everyone, its process running on.
type netLab struct {
	t      *testing.T
	tag    string // unique part of the names
	bridge string
	prefix string // "10.x.y." of the /24
	nss    []string
	hosts  []string // host ends of the veth pairs, by node index
}

// ipCmd runs ip with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetLab makes the bridge and n namespaces, or skips the test where
// namespaces cannot be made (not root, no ip). Cleanup removes them.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2)")
	}
	r := rand.Uint32()
	l := &netLab{t: t, tag: fmt.Sprintf("%06x", r&0xffffff), prefix: fmt.Sprintf("10.%d.%d.", 200+r%50, (r>>8)%250+1)}
	l.bridge = "fb" + l.tag
	t.Cleanup(l.remove)
	if err := ipCmd("link", "add", l.bridge, "type", "bridge"); err != nil {
		t.Skipf("cannot make a bridge here: %v", err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ipCmd("addr", "add", l.prefix+"1/24", "dev", l.bridge))
	must(ipCmd("link", "set", l.bridge, "up"))
	for i := range n {
		ns := fmt.Sprintf("fp%s-%d", l.tag, i)
		host, peer := fmt.Sprintf("fh%s%d", l.tag, i), fmt.Sprintf("fn%s%d", l.tag, i)
		must(ipCmd("netns", "add", ns))
		l.nss = append(l.nss, ns)
		must(ipCmd("link", "add", host, "type", "veth", "peer", "name", peer))
		l.hosts = append(l.hosts, host)
		must(ipCmd("link", "set", peer, "netns", ns))
		must(ipCmd("link", "set", host, "master", l.bridge))
		must(ipCmd("link", "set", host, "up"))
		must(ipCmd("-n", ns, "addr", "add", l.addr(i)+"/24", "dev", peer))
		must(ipCmd("-n", ns, "link", "set", peer, "up"))
		must(ipCmd("-n", ns, "link", "set", "lo", "up"))
	}
	return l
}

// addr is node index i's address (the bridge is .1).
func (l *netLab) addr(i int) string { return l.prefix + strconv.Itoa(10+i) }

// cut takes node index i's link down (up with false).
func (l *netLab) cut(i int, down bool) {
	l.t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	if err := ipCmd("link", "set", l.hosts[i], state); err != nil {
		l.t.Fatal(err)
	}
}

func (l *netLab) remove() {
	for _, h := range l.hosts {
		ipCmd("link", "del", h)
	}
	for _, ns := range l.nss {
		ipCmd("netns", "del", ns)
	}
	ipCmd("link", "del", l.bridge)
}

// startNetNode starts `fffd storage` as node id in namespace ns, listening
// on addr, joined to the control node at control; it returns once the
// node serves.
func startNetNode(t *testing.T, data string, id int, ns, addr, control string) {
	t.Helper()
	dir := filepath.Join(data, "nodes", strconv.Itoa(id))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin.token", "capability.key"} {
		b, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// No same-host socket: the clients and the other nodes would reach
	// the node through it, around the cut link.
	cfg := fmt.Sprintf("[node]\nid = %d\nno_local_socket = true\n\n[mgmtd]\naddress = %q\n\n[storage]\ntargets = [\"targets/0\"]\nchains = \"manual\"\n", id, control)
	if err := os.WriteFile(filepath.Join(dir, "fffd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "fffd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	c := exec.Command("ip", "netns", "exec", ns, filepath.Join(binDir, "fffd"), "storage",
		"--config", filepath.Join(dir, "fffd.toml"), "--data", dir, "--listen", addr+":0", "--log-format", "json")
	c.Env = cleanEnv()
	c.Stdout, c.Stderr = lf, lf
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go c.Wait()
	deadline := time.Now().Add(time.Minute) // a bound for failure only
	for {
		b, err := os.ReadFile(filepath.Join(dir, "fffd.json"))
		var ri struct{ PID int }
		if err == nil && json.Unmarshal(b, &ri) == nil && ri.PID > 0 {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "fffd.log"))
			t.Fatalf("storage node %d in %s did not start:\n%s", id, ns, lastLines(log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPartition: a storage node cut off from the network (its link down,
// the process running: it can reach neither mgmtd nor its peers, and
// nobody reaches it) for longer than the heartbeat timeout. Writes and
// reads go on through the rest of its chain; the cut node's lease runs
// out, so it serves nothing on its stale view; back on the network it
// resyncs, and every replica is the same again. Each storage node is in
// its own network namespace on a bridge the test makes and removes.
func TestPartition(t *testing.T) {
	lab := newNetLab(t, 3)
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	// The control node on the bridge, with a short heartbeat timeout and
	// its targets waiting for placement.
	if err := os.WriteFile(filepath.Join(data, "local.toml"), []byte("[node]\nno_local_socket = true\n\n[storage]\nchains = \"manual\"\n\n[mgmtd]\nheartbeat_timeout = \"2s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "up", "--daemon", "--data", data, "--listen", lab.prefix+"1:0")
	info := recordedClusterIn(t, config)
	for i := range 3 {
		startNetNode(t, data, 2+i, lab.nss[i], lab.addr(i), info.Address)
	}
	mustFFF(t, env, "admin", "chain", "place", "--replicas", "3")
	chained := waitServing(t, env)

	ctx := ctxFor(t)
	c, err := libfff.Connect(ctx, libfff.Options{Address: info.Address, Token: info.Token, NoLocalRead: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(3, 3))
	files := map[string][]byte{}
	put := func(name string, n int) {
		t.Helper()
		b := randData(rng, n)
		f, err := c.Create(ctx, name)
		if err == nil {
			_, err = f.Write(b)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		files[name] = b
	}
	check := func(what string) {
		t.Helper()
		for name, want := range files {
			f, err := c.Open(ctx, name, os.O_RDONLY, 0)
			if err != nil {
				t.Fatalf("%s: open %s: %v", what, name, err)
			}
			got := make([]byte, len(want)+1)
			n, err := f.ReadAt(got, 0)
			f.Close()
			if n != len(want) || !bytes.Equal(got[:n], want) || (err != nil && !errors.Is(err, io.EOF)) {
				t.Fatalf("%s: %s: read %d bytes (%v), want %d", what, name, n, err, len(want))
			}
		}
	}
	for i := range 4 {
		put(fmt.Sprintf("/before%d", i), 3<<20+i*1000)
	}
	check("before the cut")

	// Cut the node of the chain's tail (a storage node: the control node
	// stays reachable), with writes and reads following at once.
	victim := stopVictim(t, env)
	idx := int(victim) - 2
	lab.cut(idx, true)
	cutAt := time.Now()
	for i := range 3 {
		put(fmt.Sprintf("/during%d", i), 2<<20+i*777)
	}
	check("during the cut")
	// Past the heartbeat timeout the node is down and its target offline.
	for {
		var row *targetRow
		for _, tg := range targetsOf(t, env) {
			if tg.Node == victim && tg.ChainID != 0 {
				row = &tg
			}
		}
		if row != nil && row.State == "offline" {
			break
		}
		if time.Since(cutAt) > time.Minute { // a bound for failure only
			t.Fatalf("node %d cut off, its target still %+v", victim, row)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The cut node's own view: its lease ran out, it refuses even requests
	// that reach it (from inside its namespace).
	var vt uint32
	for _, tg := range chained {
		if tg.Node == victim {
			vt = tg.ID
		}
	}
	fenced := fencedFromInside(t, lab.nss[idx], filepath.Join(data, "nodes", strconv.Itoa(int(victim))), info.Token, vt)
	if !strings.Contains(fenced, "fenced") {
		t.Fatalf("a request inside the cut node's namespace: %s, want it fenced", fenced)
	}
	put("/after-offline", 1<<20+5)
	lab.cut(idx, false)
	chained = waitServing(t, env)
	check("after the cut")
	if r := fff(t, env, "admin", "scrub", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "0 damaged, 0 diverging") {
		t.Fatalf("scrub after the cut: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	identicalReplicas(t, chained)
	mustFFF(t, env, "down", "--data", data)
}

// recordedClusterIn reads the cluster `fff up` recorded under config
// (XDG_CONFIG_HOME).
func recordedClusterIn(t *testing.T, config string) libfff.ClusterInfo {
	t.Helper()
	old, had := os.LookupEnv("XDG_CONFIG_HOME")
	os.Setenv("XDG_CONFIG_HOME", config)
	info, err := libfff.RecordedCluster()
	if had {
		os.Setenv("XDG_CONFIG_HOME", old)
	} else {
		os.Unsetenv("XDG_CONFIG_HOME")
	}
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// fencedFromInside asks the node of dir, from inside its network
// namespace (the test's thread enters it to dial), to scrub its target tid
// and returns the error it answers (the admin token passes every other
// check, so only fencing refuses).
func fencedFromInside(t *testing.T, ns, dir, token string, tid uint32) string {
	t.Helper()
	var ri struct{ Address string }
	b, err := os.ReadFile(filepath.Join(dir, "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil {
		t.Fatalf("fffd.json of %s: %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := func() (*rpc.Conn, error) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return nil, err
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			return nil, err
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			return nil, err
		}
		defer func() {
			if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
				panic(err) // a thread left in another namespace must not run on
			}
		}()
		return rpc.Dial(ctx, ri.Address, token, rpc.ClientOptions{TCPOnly: true})
	}()
	if err != nil {
		t.Fatalf("dialing node %s from inside %s: %v", ri.Address, ns, err)
	}
	defer conn.Close()
	var resp proto.StorageScrubResp
	_, err = conn.Call(ctx, proto.MethodStorageScrub, &proto.StorageScrubReq{TargetID: tid}, &resp)
	if err == nil {
		return "ok"
	}
	return err.Error()
}
