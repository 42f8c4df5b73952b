package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"fff/internal/certs"
	"fff/internal/rpc"
	"fff/libfff"
)

// The tls suite: what TLS costs bulk reads (issue 14: TLS bulk read as a
// ratio of plaintext), plaintext and TLS side by side in one run, the two
// alternating over -rounds rounds (medians), with the CPU both ends spent:
//
//   - fffd: a sequential read of one -tls-size file (-data-readers x
//     -data-read-size ReadAt) from two `fffd local` clusters on the same
//     disk, one with [tls]; both over loopback TCP (the client TCPOnly, so
//     neither the Unix socket nor local reads; node.no_local_socket on the
//     servers), the page cache dropped before each read.
//   - rpc: 1 MiB response payloads from memory, 4 in flight on one
//     connection: the transport alone.

var tlsSize = flag.String("tls-size", "2GiB", "tls suite: size of the file read from each cluster")

// tlsSide is one side of a comparison: its client and where its server's
// CPU time is counted (0: in this process).
type tlsSide struct {
	name string
	c    *libfff.Client
	pid  int
}

func runTLSSuite(ctx context.Context, cfg config) error {
	size, err := parseSize(*tlsSize)
	if err != nil {
		return err
	}
	rsize, err := parseSize(dataCfg.readSize)
	if err != nil {
		return err
	}
	if size < rsize || dataCfg.readers <= 0 {
		return fmt.Errorf("tls: -tls-size must be at least -data-read-size, -data-readers positive")
	}
	pkiDir, err := os.MkdirTemp("", "fff-bench-tls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(pkiDir)
	if _, err := certs.Ensure(filepath.Join(pkiDir, "tls"), certs.Hosts("127.0.0.1")); err != nil {
		return err
	}
	ca, err := certs.CAPEM(filepath.Join(pkiDir, "tls"))
	if err != nil {
		return err
	}
	clientTLS, err := certs.ClientConfig(ca, "", "")
	if err != nil {
		return err
	}
	pf := func(n string) string { return filepath.Join(pkiDir, "tls", n) }
	confs := map[string]string{
		"plaintext": "[node]\nno_local_socket = true\n",
		"TLS": fmt.Sprintf("[node]\nno_local_socket = true\n\n[tls]\ncert = %q\nkey = %q\nca = %q\n",
			pf(certs.NodeFile), pf(certs.NodeKey), pf(certs.CAFile)),
	}

	var sides []tlsSide
	for _, name := range []string{"plaintext", "TLS"} {
		conf := filepath.Join(pkiDir, strings.ToLower(name)+".toml")
		if err := os.WriteFile(conf, []byte(confs[name]), 0o600); err != nil {
			return err
		}
		p, stop, err := startCluster(ctx, cfg, "tls-"+strings.ToLower(name), "--config", conf)
		if err != nil {
			return err
		}
		defer stop()
		opts := libfff.Options{Address: p.addr, Token: p.token, PoolSize: dataCfg.pool, TCPOnly: true, NoLocalRead: true}
		if name == "TLS" {
			opts.TLS = clientTLS
		}
		c, err := libfff.Connect(ctx, opts)
		if err != nil {
			return fmt.Errorf("tls: %s cluster: %w", name, err)
		}
		defer c.Close()
		if _, err := dataSeqWrite(ctx, c, "/tls-seq", size, 4<<20); err != nil {
			return fmt.Errorf("tls: writing to the %s cluster: %w", name, err)
		}
		sides = append(sides, tlsSide{name, c, p.cmd.Process.Pid})
	}

	fmt.Printf("\n## TLS against plaintext (loopback TCP)\n\n")
	fmt.Printf("machine: %s; %d CPUs; clients and servers on the same machine, over loopback TCP (no Unix socket, no local reads); TLS 1.3 (Go crypto/tls, ECDSA P-256 node certificate, AES-GCM); %d rounds, medians; CPU: client and server together, per GiB moved\n\n",
		hostInfo(), runtime.NumCPU(), cfg.rounds)
	fmt.Println("| workload | plaintext MiB/s | TLS MiB/s | TLS / plaintext | plaintext CPU-s/GiB | TLS CPU-s/GiB | plaintext range | TLS range |")
	fmt.Println("|---|---|---|---|---|---|---|---|")

	type run struct{ mibps, cpuPerGiB float64 }
	measure := func(s tlsSide, f func() (float64, error)) func() (run, error) {
		return func() (run, error) {
			c0 := cpuSeconds(s.pid)
			v, err := f()
			return run{v, (cpuSeconds(s.pid) - c0) / (float64(size) / (1 << 30))}, err
		}
	}
	read := func(s tlsSide) func() (run, error) {
		return measure(s, func() (float64, error) {
			return dataSeqRead(ctx, s.c, "/tls-seq", size, rsize, dataCfg.readers)
		})
	}
	rs, err := rotate(cfg, read(sides[0]), read(sides[1]))
	if err != nil {
		return err
	}
	row := func(what string, rs [][]run) {
		pick := func(i int, f func(run) float64) []float64 {
			var out []float64
			for _, r := range rs[i] {
				out = append(out, f(r))
			}
			return out
		}
		bw := func(r run) float64 { return r.mibps }
		cpu := func(r run) float64 { return r.cpuPerGiB }
		p, t := medianF(pick(0, bw)), medianF(pick(1, bw))
		fmt.Printf("| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", what, p, t, t/p,
			medianF(pick(0, cpu)), medianF(pick(1, cpu)), spreadF(pick(0, bw)), spreadF(pick(1, bw)))
	}
	row(fmt.Sprintf("fffd: sequential read, %s file, %d readers x %s", formatSize(size), dataCfg.readers, formatSize(rsize)), rs)

	// The transport alone: in-process servers, payloads from memory.
	envs := make([]*tlsRPCEnv, 2)
	for i, cfgTLS := range []bool{false, true} {
		var stls, ctls *tls.Config
		if cfgTLS {
			if stls, err = certs.ServerConfig(pf(certs.NodeFile), pf(certs.NodeKey), pf(certs.CAFile), false); err != nil {
				return err
			}
			ctls = clientTLS
		}
		if envs[i], err = newTLSRPCEnv(ctx, stls, ctls); err != nil {
			return err
		}
		defer envs[i].close()
	}
	const rpcBytes = 2 << 30
	bulk := func(e *tlsRPCEnv) func() (run, error) {
		return func() (run, error) {
			c0 := cpuSeconds(0)
			v, err := e.bulk(ctx, rpcBytes)
			return run{v, (cpuSeconds(0) - c0) / (rpcBytes / (1 << 30))}, err
		}
	}
	cfgNoDrop := cfg
	cfgNoDrop.noDrop = true // nothing on disk here
	if rs, err = rotate(cfgNoDrop, bulk(envs[0]), bulk(envs[1])); err != nil {
		return err
	}
	row(fmt.Sprintf("RPC: 1 MiB responses from memory, %d in flight, one connection (%s each)", tlsRPCFlight, formatSize(rpcBytes)), rs)
	return nil
}

// cpuSeconds returns the CPU time (user and system) of process pid, or of
// this process for 0.
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the parenthesised command name; utime and stime
	// are the 14th and 15th of the line, in clock ticks (100 per second).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u+st)/100 + cpuSeconds(0)
}

const (
	tlsRPCFlight = 4
	tlsRPCToken  = "bench-tls"
	tlsRPCMethod = 1
)

// tlsRPCEnv is an in-process RPC server sending 1 MiB payloads from
// memory, and a connection to it.
type tlsRPCEnv struct {
	srv  *rpc.Server
	l    net.Listener
	conn *rpc.Conn
}

func newTLSRPCEnv(ctx context.Context, stls, ctls *tls.Config) (*tlsRPCEnv, error) {
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	srv := rpc.NewServer(rpc.ServerOptions{Auth: rpc.NewStaticTokens(map[string]rpc.Identity{tlsRPCToken: {Name: "bench"}}), TLS: stls})
	srv.Handle(tlsRPCMethod, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		return &rpc.Response{Payload: [][]byte{payload}}, nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(l)
	conn, err := rpc.Dial(ctx, l.Addr().String(), tlsRPCToken, rpc.ClientOptions{TLS: ctls, TCPOnly: true})
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &tlsRPCEnv{srv: srv, l: l, conn: conn}, nil
}

func (e *tlsRPCEnv) close() {
	e.conn.Close()
	e.srv.Close()
}

// bulk reads total bytes of 1 MiB responses with tlsRPCFlight calls in
// flight and returns MiB/s.
func (e *tlsRPCEnv) bulk(ctx context.Context, total int64) (float64, error) {
	var left atomic.Int64
	left.Store(total >> 20)
	var wg sync.WaitGroup
	errs := make([]error, tlsRPCFlight)
	t0 := time.Now()
	for w := range tlsRPCFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 1<<20)
			for left.Add(-1) >= 0 {
				if _, err := e.conn.Call(ctx, tlsRPCMethod, nil, nil, rpc.IntoBuffer(dst)); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(total) / (1 << 20) / time.Since(t0).Seconds(), nil
}
