//go:build linux

package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestBucketOfIsMonotonicAndCoversRange(t *testing.T) {
	t.Parallel()
	prev := -1
	for _, v := range []uint64{0, 1, 31, 32, 33, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<33 - 1, 1 << 40} {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d, below the previous %d", v, b, prev)
		}
		if b < 0 || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, b, numBuckets)
		}
		prev = b
		if v <= maxValue {
			lo, hi := bucketRange(b)
			if v < lo || v > hi {
				t.Fatalf("value %d in bucket %d whose range is [%d, %d]", v, b, lo, hi)
			}
		}
	}
	// Every bucket's range starts right after the previous one ends.
	_, hi := bucketRange(0)
	for i := 1; i < numBuckets; i++ {
		lo, h := bucketRange(i)
		if lo != hi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, hi)
		}
		hi = h
	}
}

func TestQuantile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []uint64 // microseconds
		q      float64
		want   float64
		relTol float64
	}{
		{"empty", nil, 0.5, 0, 0},
		{"single", []uint64{7}, 0.99, 7, 0},
		{"exact small values", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5, 0},
		{"p90 of ten", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9, 9, 0},
		{"max is exact", []uint64{10, 20, 1234567}, 1, 1234567, 0},
		{"min is exact", []uint64{999, 20, 1234567}, 0, 20, 0},
		{"p99 of 1..1000", seq(1, 1000), 0.99, 990, 1.0 / 32},
		{"p50 of 1..100000", seq(1, 100000), 0.5, 50000, 1.0 / 32},
		{"p99.9 outlier", append(repeat(100, 999), 50000), 0.999, 100, 1.0 / 32},
		{"p99.9 sees the tail", append(repeat(100, 998), 50000, 50000), 0.999, 50000, 1.0 / 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h hist
			for _, v := range tt.values {
				h.recordUS(v)
			}
			got := h.quantile(tt.q)
			if math.Abs(got-tt.want) > tt.relTol*tt.want+1e-9 {
				t.Fatalf("quantile(%v) = %v, want %v ± %.1f%%", tt.q, got, tt.want, 100*tt.relTol)
			}
		})
	}
}

// TestQuantileAgainstSort checks random data against sorted exact ranks.
func TestQuantileAgainstSort(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var h hist
	vals := make([]uint64, 20000)
	for i := range vals {
		// Log-normal-ish latencies between 50 µs and a few seconds.
		vals[i] = uint64(math.Exp(rng.NormFloat64()*1.5 + 7))
		h.recordUS(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := float64(vals[int(math.Ceil(q*float64(len(vals))))-1])
		got := h.quantile(q)
		if math.Abs(got-exact) > exact/32+1 {
			t.Errorf("q=%v: got %v, exact %v", q, got, exact)
		}
	}
}

func TestMergeAndWire(t *testing.T) {
	t.Parallel()
	var a, b, all hist
	for i := uint64(1); i <= 500; i++ {
		a.recordUS(i)
		all.recordUS(i)
	}
	for i := uint64(501); i <= 1000; i++ {
		b.recordUS(i * 3)
		all.recordUS(i * 3)
	}
	var m hist
	m.addWire(a.wire())
	m.addWire(b.wire())
	m.addWire(wireHist{}) // an empty report changes nothing
	if m != all {
		t.Fatalf("merged through the wire form differs from recording all values")
	}
	if m.n != 1000 || m.min != 1 || m.max != 3000 {
		t.Fatalf("n, min, max = %d, %d, %d", m.n, m.min, m.max)
	}
	m.reset()
	if m.n != 0 || m.quantile(0.5) != 0 {
		t.Fatalf("reset left values")
	}
}

func TestRecordDuration(t *testing.T) {
	t.Parallel()
	var h hist
	h.record(-time.Millisecond) // clock skew between processes: counted as 0
	h.record(1500 * time.Microsecond)
	if h.min != 0 || h.max != 1500 {
		t.Fatalf("min, max = %d, %d", h.min, h.max)
	}
	h.recordUS(1 << 40) // clamped into the last bucket, exact max kept
	if h.max != 1<<40 || h.quantile(1) != float64(uint64(1)<<40) {
		t.Fatalf("huge value: max %d", h.max)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5}, 5},
		{[]float64{math.NaN(), 7, 9}, 8},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Errorf("median(nil) is not NaN")
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func repeat(v uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
