package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
)

// progress shows a byte progress bar on stderr, with an optional file count in
// its description, when stderr is a terminal; otherwise it does nothing. A nil
// *progress is valid and silent. Add may be called from several goroutines.
type progress struct {
	bar        *progressbar.ProgressBar
	label      string
	totalFiles int64

	mu        sync.Mutex
	files     int64
	described time.Time
}

// newProgress starts a bar over totalBytes; totalFiles > 0 adds "n/N files".
func newProgress(label string, totalBytes, totalFiles int64) *progress {
	if !isTerminal(os.Stderr) {
		return nil
	}
	p := &progress{label: label, totalFiles: totalFiles}
	p.bar = progressbar.NewOptions64(max(totalBytes, 1),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(p.description()),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
	)
	return p
}

func (p *progress) description() string {
	if p.totalFiles <= 0 {
		return p.label
	}
	return fmt.Sprintf("%s %d/%d files", p.label, p.files, p.totalFiles)
}

// Add records bytes and files done.
func (p *progress) Add(bytes, files int64) {
	if p == nil {
		return
	}
	if files != 0 {
		p.mu.Lock()
		p.files += files
		now := time.Now()
		describe := now.Sub(p.described) > 100*time.Millisecond || p.files == p.totalFiles
		if describe {
			p.described = now
			p.bar.Describe(p.description())
		}
		p.mu.Unlock()
	}
	if bytes != 0 {
		_ = p.bar.Add64(bytes)
	}
}

// Finish fills the bar (done) or leaves it where it stopped (failed) and ends its line.
func (p *progress) Finish(ok bool) {
	if p == nil {
		return
	}
	if ok {
		_ = p.bar.Finish()
		return
	}
	_ = p.bar.Exit() // runs the completion hook, which ends the line
}

// humanBytes formats n with binary units: "0 B", "4.0 KiB", "1.5 GiB".
func humanBytes(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

// parseSize reads a byte count: a plain number, or one with a unit
// (KiB/MiB/GiB/TiB are powers of 1024; kB/MB/GB/TB powers of 1000).
func parseSize(s string) (int64, error) {
	v, err := humanize.ParseBytes(s)
	if err != nil || v > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (examples: 4096, 64KiB, 1GiB, 500MB)", s)
	}
	return int64(v), nil
}
