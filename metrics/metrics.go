// Package metrics exposes a heal engine's events as Prometheus metrics.
//
// A [Collector] is both a [heal.Observer] (set it as Options.Observer) and
// a prometheus.Collector (register it):
//
//	c := metrics.New(nil)
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	eng, _ := heal.New(ds, src, lake, &heal.Options{Observer: c, ...})
//	http.Handle("/metrics", metrics.Handler(reg))
//
// # Metrics
//
// Every metric carries the dataset label. path is "live" or "repair" for
// source calls and "live" or "resynthesize" for derivations; outcome is
// "ok", "no_data" or "error".
//
//	heal_source_fetches_total{dataset,path,outcome}        counter
//	heal_source_fetch_duration_seconds{dataset,path}       histogram
//	heal_rows_written_total{dataset,path}                  counter (path: live or repair)
//	heal_audits_total{dataset}                             counter
//	heal_missing_slots{dataset}                            gauge, slots the last audit found missing
//	heal_gap_slots_total{dataset}                          counter, slots found missing for the first time
//	heal_repaired_slots_total{dataset}                     counter
//	heal_empty_slots_total{dataset}                        counter, slots the source confirmed empty
//	heal_alarms_total{dataset}                             counter
//	heal_resolved_total{dataset}                           counter, alarms that healed
//	heal_derivations_total{dataset,path,outcome}           counter
//	heal_derive_duration_seconds{dataset,path}             histogram
//	heal_compacted_partitions_total{dataset}               counter
//
// Durations are the events' Elapsed, measured on the engine's clock.
// Keys are not labels: a dataset may have thousands of them.
package metrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/selfheal/heal"
)

// Options configures a [Collector]. A nil *Options, or any zero field,
// means the default written beside the field.
type Options struct {
	// Namespace prefixes every metric name. "": "heal".
	Namespace string
	// ConstLabels are added to every metric (e.g. the pipeline's name).
	ConstLabels prometheus.Labels
	// Buckets are the duration histograms' buckets, in seconds. nil:
	// 5ms to about 40s, doubling.
	Buckets []float64
}

// Collector turns [heal.Event]s into Prometheus metrics; see the package
// doc. Observe may be called concurrently and never blocks.
type Collector struct {
	fetches, rows, derives                                  *prometheus.CounterVec
	audits, gaps, repaired, empty, alarms, resolved, compac *prometheus.CounterVec
	missing                                                 *prometheus.GaugeVec
	fetchSecs, deriveSecs                                   *prometheus.HistogramVec
	all                                                     []prometheus.Collector
}

var (
	_ heal.Observer        = (*Collector)(nil)
	_ prometheus.Collector = (*Collector)(nil)
)

// New returns a collector with no samples yet. opts may be nil.
func New(opts *Options) *Collector {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Namespace == "" {
		o.Namespace = "heal"
	}
	if o.Buckets == nil {
		o.Buckets = prometheus.ExponentialBuckets(0.005, 2, 14)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels},
			append([]string{"dataset"}, labels...))
	}
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels, Buckets: o.Buckets},
			[]string{"dataset", "path"})
	}
	c := &Collector{
		fetches:    counter("source_fetches_total", "Source calls, by path (live, repair) and outcome (ok, no_data, error).", "path", "outcome"),
		rows:       counter("rows_written_total", "Rows landed in the lake, by path (live, repair).", "path"),
		derives:    counter("derivations_total", "Derived windows computed, by path (live, resynthesize) and outcome.", "path", "outcome"),
		audits:     counter("audits_total", "Audits finished."),
		gaps:       counter("gap_slots_total", "Slots an audit found missing for the first time."),
		repaired:   counter("repaired_slots_total", "Missing slots filled by repair."),
		empty:      counter("empty_slots_total", "Missing slots the source confirmed empty."),
		alarms:     counter("alarms_total", "Alarms raised: holes heal could not fill."),
		resolved:   counter("resolved_total", "Alarmed holes that healed later."),
		compac:     counter("compacted_partitions_total", "Partitions compacted."),
		fetchSecs:  hist("source_fetch_duration_seconds", "Duration of source calls, by path (live, repair)."),
		deriveSecs: hist("derive_duration_seconds", "Duration of derivations, by path (live, resynthesize)."),
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: o.Namespace, Name: "missing_slots",
			Help: "Slots the last audit found missing.", ConstLabels: o.ConstLabels}, []string{"dataset"}),
	}
	c.all = []prometheus.Collector{c.fetches, c.rows, c.derives, c.audits, c.gaps, c.repaired, c.empty,
		c.alarms, c.resolved, c.compac, c.fetchSecs, c.deriveSecs, c.missing}
	return c
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, heal.ErrNoData):
		return "no_data"
	}
	return "error"
}

// Observe implements [heal.Observer].
func (c *Collector) Observe(ev heal.Event) {
	ds := ev.Dataset
	switch ev.Kind {
	case heal.EventFetch:
		path := "repair"
		if ev.Live {
			path = "live"
		}
		c.fetches.WithLabelValues(ds, path, outcome(ev.Err)).Inc()
		c.fetchSecs.WithLabelValues(ds, path).Observe(ev.Elapsed.Seconds())
	case heal.EventWrite:
		path := "repair"
		if ev.Live {
			path = "live"
		}
		c.rows.WithLabelValues(ds, path).Add(float64(ev.Rows))
	case heal.EventDerived:
		path := "resynthesize"
		if ev.Live {
			path = "live"
		}
		c.derives.WithLabelValues(ds, path, outcome(ev.Err)).Inc()
		c.deriveSecs.WithLabelValues(ds, path).Observe(ev.Elapsed.Seconds())
	case heal.EventAudit:
		c.audits.WithLabelValues(ds).Inc()
		c.missing.WithLabelValues(ds).Set(float64(ev.Rows))
	case heal.EventGap:
		c.gaps.WithLabelValues(ds).Add(float64(ev.Rows))
	case heal.EventRepaired:
		c.repaired.WithLabelValues(ds).Add(float64(ev.Rows))
	case heal.EventEmpty:
		c.empty.WithLabelValues(ds).Add(float64(ev.Rows))
	case heal.EventAlarm:
		c.alarms.WithLabelValues(ds).Inc()
	case heal.EventResolved:
		c.resolved.WithLabelValues(ds).Inc()
	case heal.EventCompact:
		c.compac.WithLabelValues(ds).Add(float64(ev.Rows))
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range c.all {
		x.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, x := range c.all {
		x.Collect(ch)
	}
}

// Handler serves g's metrics in the Prometheus exposition format: mount it
// at /metrics.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
