package broker

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
		Shards:                    DefaultShards,
		QueueSize:                 DefaultQueueSize,
		QueueBytes:                DefaultQueueBytes,
		OutboundBytes:             DefaultOutboundBytes,
		MaxSubscriptions:          DefaultMaxSubscriptions,
		MaxPatternSegments:        DefaultMaxPatternSegments,
		MaxSessionPatternSegments: DefaultMaxSessionPatternSegments,
		MaxPatternNodes:           DefaultMaxPatternNodes,
	}
	negative := Config{
		Shards: -1, QueueSize: -1, QueueBytes: -1, OutboundBytes: -1, MaxSubscriptions: -1,
		MaxPatternSegments: -1, MaxSessionPatternSegments: -1, MaxPatternNodes: -1,
	}
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
	set := Config{
		Shards: 3, QueueSize: 4, QueueBytes: 5, OutboundBytes: 6, MaxSubscriptions: 7,
		MaxPatternSegments: 8, MaxSessionPatternSegments: 9, MaxPatternNodes: 10,
		Now: func() time.Time { return time.Time{} },
	}
	got := set.withDefaults()
	if !got.Now().IsZero() {
		t.Error("withDefaults replaced Now")
	}
	got.Now, set.Now = nil, nil
	if !reflect.DeepEqual(got, set) {
		t.Errorf("withDefaults(%+v) = %+v, want it unchanged", set, got)
	}
}
