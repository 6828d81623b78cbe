package httpapi

import (
	"testing"

	"github.com/tidings-io/tidings/auth"
)

// TestConfigDefaults: a zero field means its Default* constant; a negative
// PublishRate turns the rate off and is kept, while the negative bounds
// that cannot be turned off mean their defaults too.
func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, Config{PublishRate: DefaultPublishRate, MaxBodySize: DefaultMaxBodySize, MaxBatch: DefaultMaxBatch}},
		{"negative", Config{PublishRate: -1, MaxBodySize: -1, MaxBatch: -1}, Config{PublishRate: -1, MaxBodySize: DefaultMaxBodySize, MaxBatch: DefaultMaxBatch}},
		{"set", Config{PublishRate: 2.5, MaxBodySize: 10, MaxBatch: 3}, Config{PublishRate: 2.5, MaxBodySize: 10, MaxBatch: 3}},
	} {
		got := tc.in.withDefaults()
		if got.Logger == nil {
			t.Errorf("%s: Logger is nil, want a discarding logger", tc.name)
		}
		if got.PublishRate != tc.want.PublishRate || got.MaxBodySize != tc.want.MaxBodySize || got.MaxBatch != tc.want.MaxBatch {
			t.Errorf("%s: withDefaults gives PublishRate %v, MaxBodySize %d, MaxBatch %d; want %v, %d, %d", tc.name,
				got.PublishRate, got.MaxBodySize, got.MaxBatch, tc.want.PublishRate, tc.want.MaxBodySize, tc.want.MaxBatch)
		}
	}
	// The rate a key without one of its own gets: the default, or none
	// when PublishRate is negative.
	key := []auth.APIKey{{Name: "k", Secret: "secret-of-k"}}
	if ks := newKeys(key, Config{}.withDefaults().PublishRate); ks[0].limiter == nil || ks[0].limiter.Limit() != DefaultPublishRate {
		t.Errorf("PublishRate 0: the key's limiter is %v, want DefaultPublishRate", ks[0].limiter)
	}
	if ks := newKeys(key, Config{PublishRate: -1}.withDefaults().PublishRate); ks[0].limiter != nil {
		t.Errorf("PublishRate -1: the key has a limiter of %v, want none", ks[0].limiter.Limit())
	}
}
