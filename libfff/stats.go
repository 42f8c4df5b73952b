package libfff

import (
	"errors"
	"io"
	"math/bits"
	"sync/atomic"
	"time"
)

// Stats are a client's counters since Connect: what it read and wrote,
// how, how long reads took, and what it retried. Python's fff.stats()
// returns them; a slow loader is told apart from a slow cluster with
// them (docs/python.md).
type Stats struct {
	// Reads counts read operations (each ReadAt, each op of a ReadBatch)
	// and ReadBytes their bytes; ReadErrors those that failed (a read
	// cut short by the end of the file did not).
	Reads, ReadBytes, ReadErrors int64
	// ReadCalls counts ReadBatch calls (a ReadAt is one): the unit
	// ReadLatency times.
	ReadCalls int64
	// LocalBytes were read from a same-host node's data files directly,
	// the rest through storage nodes' sockets; LocalFallbacks counts IOs
	// whose local read failed and went through the socket instead.
	LocalBytes, LocalFallbacks int64
	// Retries counts chunk reads sent again after a retryable failure (a
	// failover, a chunk being written down its chain, an outage).
	Retries int64
	// Writes counts chunk writes sent to storage, WriteBytes their bytes.
	Writes, WriteBytes int64
	// ReadLatency is the time of ReadBatch calls.
	ReadLatency Latency
}

// Latency summarizes a histogram of durations with power-of-two buckets:
// quantiles are the upper bound of their bucket (at most 2× off).
type Latency struct {
	Count    int64
	Sum      time.Duration
	P50, P99 time.Duration
	Max      time.Duration
}

// clientCounters are the atomics behind Stats.
type clientCounters struct {
	reads, readBytes, readErrors, readCalls atomic.Int64
	retries                                 atomic.Int64
	writes, writeBytes                      atomic.Int64
	readLat                                 latencyHist
}

// latencyHist counts durations in buckets of powers of two microseconds:
// bucket i holds [2^(i-1), 2^i) µs, bucket 0 under 1 µs.
type latencyHist struct {
	buckets [36]atomic.Int64
	sum     atomic.Int64 // ns
	max     atomic.Int64 // ns
}

func (h *latencyHist) observe(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	i := min(bits.Len64(us), len(h.buckets)-1)
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

func (h *latencyHist) summary() Latency {
	var counts [len(h.buckets)]int64
	var l Latency
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		l.Count += counts[i]
	}
	l.Sum, l.Max = time.Duration(h.sum.Load()), time.Duration(h.max.Load())
	quantile := func(q float64) time.Duration {
		want := int64(q * float64(l.Count))
		var seen int64
		for i, n := range counts {
			seen += n
			if seen > want {
				return min(time.Duration(1<<i)*time.Microsecond, l.Max)
			}
		}
		return l.Max
	}
	if l.Count > 0 {
		l.P50, l.P99 = quantile(0.5), quantile(0.99)
	}
	return l
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	st := Stats{
		Reads: s.reads.Load(), ReadBytes: s.readBytes.Load(), ReadErrors: s.readErrors.Load(),
		ReadCalls: s.readCalls.Load(), Retries: s.retries.Load(),
		Writes: s.writes.Load(), WriteBytes: s.writeBytes.Load(),
		ReadLatency: s.readLat.summary(),
	}
	if c.local != nil {
		st.LocalBytes, st.LocalFallbacks = c.local.bytes.Load(), c.local.fallbacks.Load()
	}
	return st
}

// countBatch counts a finished ReadBatch.
func (c *Client) countBatch(ops []ReadOp, took time.Duration) {
	var n, failed int64
	for i := range ops {
		if err := ops[i].Err; err != nil && !errors.Is(err, io.EOF) {
			failed++
			continue
		}
		n += int64(ops[i].N)
	}
	s := &c.stats
	s.reads.Add(int64(len(ops)) - failed)
	s.readErrors.Add(failed)
	s.readBytes.Add(n)
	s.readCalls.Add(1)
	s.readLat.observe(took)
}
