package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"math"
	"strconv"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/internal/defaults"
	"github.com/tidings-io/tidings/limit"
	"golang.org/x/time/rate"
)

var refusalReasons = []limit.Reason{limit.ReasonHTTPKey, limit.ReasonHTTPLoopback, limit.ReasonHTTPScope, limit.ReasonHTTPRate, limit.ReasonHTTPKeyFailures}

// newKeyFailures returns the throttle of failed API keys, per client
// address (an IPv4 address, an IPv6 /64; every unknown address is one):
// after 20 wrong keys (a Bearer secret that is no key's; a missing or
// malformed Authorization header is no guess and does not count) within
// a minute the address is answered 429 rate_limited with Retry-After for
// 5 s, then for twice as long at each new block, up to 10 minutes; 10 minutes without a failure after a block
// forget it. At most 10 000 addresses are remembered (the least recently
// failed go first). A valid key from another address is not affected;
// from a blocked address even a valid key gets 429, so that a guesser
// learns nothing while blocked. These are limit.FailureConfig's defaults.
func newKeyFailures() *limit.Failures { return limit.NewFailures(limit.FailureConfig{}) }

// Stats are the publish API's counters.
type Stats struct {
	// Refused counts refused publishes by reason (limit.Reason*),
	// every reason present.
	Refused map[limit.Reason]uint64
}

// Stats returns a snapshot of the API's counters.
func (a *API) Stats() Stats {
	return Stats{Refused: a.refused.Snapshot()}
}

// apiKey is a configured key with the digest its secret is compared by
// and its rate.
type apiKey struct {
	auth.APIKey
	digest  [sha256.Size]byte
	limiter *rate.Limiter // nil: no limit
}

// newKeys prepares keys; a key without a rate of its own gets def
// (negative: no limit).
func newKeys(keys []auth.APIKey, def float64) []*apiKey {
	out := make([]*apiKey, len(keys))
	for i, k := range keys {
		ak := &apiKey{APIKey: k, digest: sha256.Sum256([]byte(k.Secret))}
		r := k.Rate
		if r == 0 {
			r = def
		}
		if r > 0 {
			ak.limiter = rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(r))))
		}
		out[i] = ak
	}
	return out
}

// SetLimits changes the largest publish body (Config.MaxBodySize; zero
// or negative: DefaultMaxBodySize) and the rate of the API keys without
// one of their own (Config.PublishRate; zero: DefaultPublishRate,
// negative: no limit), for the requests that follow. The keys whose rate
// changes start with a full second's worth.
func (a *API) SetLimits(maxBodySize int64, publishRate float64) {
	defaults.Positive(&maxBodySize, DefaultMaxBodySize)
	defaults.Zero(&publishRate, DefaultPublishRate)
	a.maxBody.Store(maxBodySize)
	a.keysMu.Lock()
	defer a.keysMu.Unlock()
	old := *a.keys.Load()
	keys := make([]*apiKey, len(old))
	for i, k := range old {
		if k.Rate != 0 {
			keys[i] = k // a rate of its own: unchanged
		} else {
			keys[i] = newKeys([]auth.APIKey{k.APIKey}, publishRate)[0]
		}
	}
	a.keys.Store(&keys)
}

// apiKeys returns the configured keys.
func (a *API) apiKeys() []*apiKey { return *a.keys.Load() }

// lookupKey returns the key whose secret is secret, or nil. It compares
// SHA-256 digests in constant time against every key, so that neither the
// secrets' contents nor their lengths show in the timing.
func lookupKey(keys []*apiKey, secret string) *apiKey {
	d := sha256.Sum256([]byte(secret))
	var found *apiKey
	for _, k := range keys {
		if subtle.ConstantTimeCompare(d[:], k.digest[:]) == 1 {
			found = k
		}
	}
	return found
}

// allow takes one publish from the key's rate. When refused it returns
// the Retry-After value in seconds. A nil key (loopback publisher) is
// not limited.
func (k *apiKey) allow() (retryAfter string, ok bool) {
	if k == nil || k.limiter == nil {
		return "", true
	}
	now := time.Now()
	if k.limiter.AllowN(now, 1) {
		return "", true
	}
	wait := (1 - k.limiter.TokensAt(now)) / float64(k.limiter.Limit())
	return strconv.Itoa(max(1, int(math.Ceil(wait)))), false
}

// retrySeconds is d as a Retry-After value: whole seconds, at least 1.
func retrySeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
