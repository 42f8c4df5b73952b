package chunkengine

import (
	"errors"
	"sync/atomic"

	"fff/internal/proto"
)

// Stats are an engine's counters since Open (fffd's metrics).
type Stats struct {
	Reads, ReadBytes int64 // chunk reads served (Read, ReadBatch) and their bytes
	// Writes counts writes, truncates and whole-chunk replaces committed;
	// WriteBytes the bytes they wrote.
	Writes, WriteBytes int64
	// Fsyncs counts syncs of data files and their directories (the KV's
	// commits sync on their own).
	Fsyncs int64
	// ChecksumFailures counts reads refused because stored bytes, a data
	// file or a record did not match their checksums (ChecksumMismatch).
	ChecksumFailures int64
	ReadRetries      int64 // reads re-planned after a concurrent commit
}

// counters are the atomic fields behind Stats.
type counters struct {
	reads, readBytes   atomic.Int64
	writes, writeBytes atomic.Int64
	fsyncs             atomic.Int64
	checksumFailures   atomic.Int64
	readRetries        atomic.Int64
}

// Stats reports the engine's counters.
func (e *Engine) Stats() Stats {
	c := &e.stats
	return Stats{
		Reads: c.reads.Load(), ReadBytes: c.readBytes.Load(),
		Writes: c.writes.Load(), WriteBytes: c.writeBytes.Load(),
		Fsyncs:           c.fsyncs.Load(),
		ChecksumFailures: c.checksumFailures.Load(),
		ReadRetries:      c.readRetries.Load(),
	}
}

// countReads counts a finished ReadBatch.
func (e *Engine) countReads(reqs []ReadReq) {
	var n int64
	for i := range reqs {
		n += int64(reqs[i].N)
		e.countErr(reqs[i].Err)
	}
	e.stats.reads.Add(int64(len(reqs)))
	e.stats.readBytes.Add(n)
}

// countWrite counts a committed change of n bytes.
func (e *Engine) countWrite(n int, err error) {
	if err == nil {
		e.stats.writes.Add(1)
		e.stats.writeBytes.Add(int64(n))
	}
	e.countErr(err)
}

// countErr counts a checksum failure.
func (e *Engine) countErr(err error) {
	if err != nil && errors.Is(err, proto.ErrChecksumMismatch) {
		e.stats.checksumFailures.Add(1)
	}
}
