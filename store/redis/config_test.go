package redis

import (
	"reflect"
	"testing"
	"time"
)

// TestConfigDefaults: a zero field means its Default* constant, and so does
// a negative one (none of these bounds can be turned off), but a negative
// MaxCoalesce, which turns coalescing off; a set one is kept, MetaTTL
// raised to HistoryTTL and IdempotencyWindow at least.
func TestConfigDefaults(t *testing.T) {
	want := Config{
		Prefix:            DefaultPrefix,
		Timeout:           DefaultTimeout,
		HistorySize:       DefaultHistorySize,
		HistoryTTL:        DefaultHistoryTTL,
		IdempotencyWindow: DefaultIdempotencyWindow,
		MetaTTL:           DefaultMetaTTL,
		MaxCoalesce:       DefaultMaxCoalesce,
	}
	negative := Config{Timeout: -1, HistorySize: -1, HistoryTTL: -1, IdempotencyWindow: -1, MetaTTL: -1}
	for name, in := range map[string]Config{"zero": {}, "negative": negative} {
		got := in.withDefaults()
		if got.Logger == nil {
			t.Errorf("%s: Logger is nil, want a discarding logger", name)
		}
		got.Logger = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: withDefaults = %+v, want %+v", name, got, want)
		}
	}
	set := Config{Prefix: "p:", Timeout: time.Second, HistorySize: 1, HistoryTTL: time.Minute, IdempotencyWindow: time.Hour, MetaTTL: 2 * time.Hour, MaxCoalesce: 7}
	got := set.withDefaults()
	got.Logger = nil
	if !reflect.DeepEqual(got, set) {
		t.Errorf("withDefaults(%+v) = %+v, want it unchanged", set, got)
	}
	if cl := (Config{ClusterAddrs: []string{"127.0.0.1:7000"}}).withDefaults(); cl.MaxCoalesce != DefaultMaxCoalesce {
		t.Errorf("a cluster's default MaxCoalesce is %d, want %d (per master)", cl.MaxCoalesce, DefaultMaxCoalesce)
	}
	if cl := (Config{ClusterAddrs: []string{"127.0.0.1:7000"}, MaxCoalesce: 64}).withDefaults(); cl.MaxCoalesce != 64 {
		t.Errorf("a cluster's MaxCoalesce 64 became %d", cl.MaxCoalesce)
	}
	if off := (Config{MaxCoalesce: -1}).withDefaults(); off.MaxCoalesce != -1 {
		t.Errorf("MaxCoalesce -1 (off) became %d", off.MaxCoalesce)
	}
	short := Config{HistoryTTL: 48 * time.Hour, MetaTTL: time.Hour}.withDefaults()
	if short.MetaTTL != 48*time.Hour {
		t.Errorf("MetaTTL %v with HistoryTTL 48h, want 48h", short.MetaTTL)
	}
}
