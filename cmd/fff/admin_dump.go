package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newAdminDumpCmd is `fff admin dump DIR`: what a bug report needs, in one
// archive.
func newAdminDumpCmd() *cobra.Command {
	var logBytes int64
	cmd := &cobra.Command{
		Use:   "dump DIR",
		Short: "Collect status, routing, metrics, configs and logs into one archive for a bug report",
		Long: `Write DIR/fff-dump-TIME.tar.gz with what a bug report about the default
cluster needs:

  status.json         fff status --json: health, nodes, targets, chains (the routing info)
  status.txt          the same as text
  metrics/NODE.txt    each node's Prometheus metrics, scraped now (nodes whose listener
                      cannot be read are listed in errors.txt)
  config/...          for a local cluster (fff up): the nodes' TOML configs, with every
                      value of a key that names a token, secret, password or key removed
  logs/...            for a local cluster: the nodes' fffd logs (the last --log-bytes of each)

Tokens, keys and data never go into the archive: admin.token, TLS keys and
chunk files are not read. Read the archive before you send it: logs name
paths and users.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			c, err := dialAdmin()
			if err != nil {
				return err
			}
			defer c.Close()
			path, err := writeDump(ctx, c, args[0], logBytes, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		},
	}
	cmd.Flags().Int64Var(&logBytes, "log-bytes", 16<<20, "keep at most this many bytes of the end of each log")
	return cmd
}

// dumpEntry is one file of the archive.
type dumpEntry struct {
	name string
	data []byte
}

func writeDump(ctx context.Context, c *adminConn, dir string, logBytes int64, now time.Time) (string, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", usageErrorf("%s is not a directory", dir)
	}
	var entries []dumpEntry
	var problems []string
	add := func(name string, data []byte) { entries = append(entries, dumpEntry{name, data}) }

	st, err := gatherStatus(ctx, c)
	if err != nil {
		return "", err
	}
	js, _ := json.MarshalIndent(st, "", "  ")
	add("status.json", append(js, '\n'))
	var txt bytes.Buffer
	if err := printStatus(&txt, st); err != nil {
		return "", err
	}
	add("status.txt", txt.Bytes())

	client := &http.Client{Timeout: 10 * time.Second}
	for _, n := range st.routing.Nodes {
		if n.Metrics == "" {
			problems = append(problems, fmt.Sprintf("node %d: no metrics listener reported", n.ID))
			continue
		}
		b, err := fetch(ctx, client, "http://"+n.Metrics+"/metrics")
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %d: metrics at %s: %v", n.ID, n.Metrics, err))
			continue
		}
		add(fmt.Sprintf("metrics/node-%d.txt", n.ID), b)
	}

	if data := c.info.DataDir; data != "" {
		err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable parts are skipped
			}
			rel, _ := filepath.Rel(data, p)
			if d.IsDir() {
				switch d.Name() {
				case "targets", "etcd", "tls": // data, the KV, keys
					if p != data {
						return filepath.SkipDir
					}
				}
				return nil
			}
			switch {
			case strings.HasSuffix(d.Name(), ".toml"):
				b, err := os.ReadFile(p)
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", rel, err))
					return nil
				}
				add("config/"+rel, redactTOML(b))
			case strings.HasSuffix(d.Name(), ".log"):
				b, err := tail(p, logBytes)
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", rel, err))
					return nil
				}
				add("logs/"+rel, b)
			}
			return nil
		})
		if err != nil {
			problems = append(problems, err.Error())
		}
	} else {
		problems = append(problems, "not a local cluster of this host: configs and logs are on the nodes (DATA/*.toml, DATA/fffd.log)")
	}
	if len(problems) > 0 {
		add("errors.txt", []byte(strings.Join(problems, "\n")+"\n"))
	}

	path := filepath.Join(dir, "fff-dump-"+now.UTC().Format("20060102T150405Z")+".tar.gz")
	if err := writeTarGz(path, entries, now); err != nil {
		return "", &exitError{1, fmt.Errorf("writing %s: %w", path, err)}
	}
	return path, nil
}

func fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// tail reads the last n bytes of a file.
func tail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if off := fi.Size() - n; off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, n))
}

// secretKey matches TOML keys whose values are secrets.
var secretKey = regexp.MustCompile(`(?im)^(\s*[a-z0-9_.-]*(token|secret|password|passwd|key)[a-z0-9_.-]*\s*=\s*).*$`)

// redactTOML removes the values of keys that name secrets. A key path
// (tls.key = "/path") is kept out too: the path says where a key is.
func redactTOML(b []byte) []byte {
	return secretKey.ReplaceAll(b, []byte(`${1}"(removed by fff admin dump)"`))
}

func writeTarGz(path string, entries []dumpEntry, now time.Time) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: "fff-dump/" + e.name, Mode: 0o600, Size: int64(len(e.data)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := gz.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
