//go:build linux

package main

import (
	"math/bits"
	"time"
)

// Latencies are recorded in microseconds in a log-linear histogram: values
// below 2^subBits are exact, above that each power of two is split into
// 2^subBits buckets, so a percentile is within 1/2^subBits (3.1 %) of the
// true value. Values above maxValue are clamped (and the exact maximum is
// kept apart).
const (
	subBits    = 5
	subBuckets = 1 << subBits
	// maxValue is about 2.3 hours in microseconds: nothing a bounded run
	// records comes near it.
	maxValue   = 1<<33 - 1
	numBuckets = subBuckets + (33-subBits)*subBuckets
)

// hist is a latency histogram. The zero value is empty and ready to use;
// it is not safe for concurrent use.
type hist struct {
	counts [numBuckets]uint64
	n      uint64
	sum    uint64
	min    uint64
	max    uint64
}

// bucketOf returns the bucket index of v (microseconds).
func bucketOf(v uint64) int {
	if v > maxValue {
		v = maxValue
	}
	if v < subBuckets {
		return int(v)
	}
	// e >= 0: how far the top bit is above the sub-bucket bits.
	e := bits.Len64(v) - subBits - 1
	mant := v >> uint(e) // in [subBuckets, 2*subBuckets)
	return subBuckets + e*subBuckets + int(mant-subBuckets)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i)
	}
	e := (i - subBuckets) / subBuckets
	mant := uint64(subBuckets + (i-subBuckets)%subBuckets)
	lo = mant << uint(e)
	hi = lo + (1 << uint(e)) - 1
	return lo, hi
}

// record adds one latency.
func (h *hist) record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.recordUS(us)
}

// recordUS adds one value in microseconds.
func (h *hist) recordUS(us uint64) {
	if h.n == 0 || us < h.min {
		h.min = us
	}
	if us > h.max {
		h.max = us
	}
	h.n++
	h.sum += us
	h.counts[bucketOf(us)]++
}

// merge adds every value of o to h.
func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// reset empties h.
func (h *hist) reset() { *h = hist{} }

// quantile returns the value (microseconds) at quantile q in [0, 1]: the
// smallest recorded value v such that at least q of the values are <= v,
// reported as the middle of its bucket, clamped to the exact min and max.
// An empty histogram returns 0.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return float64(h.min)
	}
	if q >= 1 {
		return float64(h.max)
	}
	rank := uint64(q*float64(h.n) + 0.999999999) // ceil, tolerant of float error
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := float64(lo+hi) / 2
			v = max(v, float64(h.min))
			v = min(v, float64(h.max))
			return v
		}
	}
	return float64(h.max)
}

// wireHist is a histogram as sent between processes: only the non-empty
// buckets, as index/count pairs.
type wireHist struct {
	N   uint64      `json:"n"`
	Sum uint64      `json:"sum"`
	Min uint64      `json:"min"`
	Max uint64      `json:"max"`
	B   [][2]uint64 `json:"b,omitempty"`
}

func (h *hist) wire() wireHist {
	w := wireHist{N: h.n, Sum: h.sum, Min: h.min, Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			w.B = append(w.B, [2]uint64{uint64(i), c})
		}
	}
	return w
}

// addWire merges a histogram received from a worker.
func (h *hist) addWire(w wireHist) {
	if w.N == 0 {
		return
	}
	o := hist{n: w.N, sum: w.Sum, min: w.Min, max: w.Max}
	for _, p := range w.B {
		if p[0] < numBuckets {
			o.counts[p[0]] += p[1]
		}
	}
	h.merge(&o)
}
