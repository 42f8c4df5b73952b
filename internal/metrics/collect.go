package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Family is one metric read from snapshots of type S: a counter (name
// ending in _total) or a gauge.
type Family[S any] struct {
	Name  string // without the fff_ prefix
	Help  string
	Gauge bool
	Value func(S) float64
}

// Labeled is one snapshot with the values of the collector's labels.
type Labeled[S any] struct {
	Labels []string
	Stats  S
}

// Snapshots is a collector of families read, at every scrape, from the
// snapshots a function returns (one per label set: per target, per
// chain state, ...). The parts of fffd keep plain counters; this turns
// them into metrics without Prometheus types on their paths.
type Snapshots[S any] struct {
	read  func() []Labeled[S]
	fams  []Family[S]
	descs []*prometheus.Desc
}

// NewSnapshots returns a collector over read's snapshots, each with values
// for labels.
func NewSnapshots[S any](labels []string, read func() []Labeled[S], fams ...Family[S]) *Snapshots[S] {
	c := &Snapshots[S]{read: read, fams: fams}
	for _, f := range fams {
		c.descs = append(c.descs, prometheus.NewDesc(Namespace+"_"+f.Name, f.Help, labels, nil))
	}
	return c
}

// One is NewSnapshots for a single snapshot without labels.
func One[S any](read func() S, fams ...Family[S]) *Snapshots[S] {
	return NewSnapshots(nil, func() []Labeled[S] { return []Labeled[S]{{Stats: read()}} }, fams...)
}

// Describe is prometheus.Collector.
func (c *Snapshots[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect is prometheus.Collector.
func (c *Snapshots[S]) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.read() {
		for i, f := range c.fams {
			t := prometheus.CounterValue
			if f.Gauge {
				t = prometheus.GaugeValue
			}
			ch <- prometheus.MustNewConstMetric(c.descs[i], t, f.Value(s.Stats), s.Labels...)
		}
	}
}
