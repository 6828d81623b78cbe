package redis

import (
	"reflect"
	"testing"
	"time"
)

// TestConfigDefaults: a zero field means its Default* constant, and so does
// a negative one (none of these bounds can be turned off); a set one is
// kept, MetaTTL raised to HistoryTTL and IdempotencyWindow at least.
func TestConfigDefaults(t *testing.T) {
	want := Config{
		Prefix:            DefaultPrefix,
		Timeout:           DefaultTimeout,
		HistorySize:       DefaultHistorySize,
		HistoryTTL:        DefaultHistoryTTL,
		IdempotencyWindow: DefaultIdempotencyWindow,
		MetaTTL:           DefaultMetaTTL,
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
	set := Config{Prefix: "p:", Timeout: time.Second, HistorySize: 1, HistoryTTL: time.Minute, IdempotencyWindow: time.Hour, MetaTTL: 2 * time.Hour}
	got := set.withDefaults()
	got.Logger = nil
	if !reflect.DeepEqual(got, set) {
		t.Errorf("withDefaults(%+v) = %+v, want it unchanged", set, got)
	}
	short := Config{HistoryTTL: 48 * time.Hour, MetaTTL: time.Hour}.withDefaults()
	if short.MetaTTL != 48*time.Hour {
		t.Errorf("MetaTTL %v with HistoryTTL 48h, want 48h", short.MetaTTL)
	}
}
