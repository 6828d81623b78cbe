package memory

import (
	"reflect"
	"testing"
	"time"
)

// TestConfigDefaults: a zero field means its Default* constant, and so does
// a negative one (none of these bounds can be turned off); a positive one
// is kept.
func TestConfigDefaults(t *testing.T) {
	want := Config{
		HistorySize:       DefaultHistorySize,
		HistoryTTL:        DefaultHistoryTTL,
		HistoryBytes:      DefaultHistoryBytes,
		IdempotencyWindow: DefaultIdempotencyWindow,
	}
	negative := Config{HistorySize: -1, HistoryTTL: -1, HistoryBytes: -1, IdempotencyWindow: -1}
	for name, in := range map[string]Config{"zero": {}, "negative": negative} {
		got := in.withDefaults()
		if got.Now == nil {
			t.Errorf("%s: Now is nil, want time.Now", name)
		}
		got.Now = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: withDefaults = %+v, want %+v", name, got, want)
		}
	}
	set := Config{HistorySize: 1, HistoryTTL: time.Second, HistoryBytes: 2, IdempotencyWindow: time.Minute}
	got := set.withDefaults()
	got.Now = nil
	if !reflect.DeepEqual(got, set) {
		t.Errorf("withDefaults(%+v) = %+v, want it unchanged", set, got)
	}
}
