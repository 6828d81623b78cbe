package redis_test

import (
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformanceSingleRedis(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, opts storetest.Options) broker.Store {
		return newStore(t, redis.Config{URL: srv.URL(), HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL})
	})
}

func TestConformanceRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	storetest.Run(t, func(t *testing.T, opts storetest.Options) broker.Store {
		return newStore(t, redis.Config{ClusterAddrs: cl.Addrs(), HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL})
	})
}

func TestConformanceRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master)
	storetest.Run(t, func(t *testing.T, opts storetest.Options) broker.Store {
		return newStore(t, redis.Config{SentinelMaster: "mymaster", SentinelAddrs: []string{sentinel},
			HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL})
	})
}

// TestConformanceHistoryFor runs the suite of a history per topic on a
// single Redis (a batch of several topics is one script run) and a
// cluster (a run per topic).
func TestConformanceHistoryFor(t *testing.T) {
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t)
	t.Run("single", func(t *testing.T) {
		storetest.RunHistoryFor(t, func(t *testing.T, opts storetest.Options) broker.Store {
			return newStore(t, redis.Config{URL: srv.URL(), HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL, HistoryFor: opts.HistoryFor})
		})
	})
	t.Run("cluster", func(t *testing.T) {
		storetest.RunHistoryFor(t, func(t *testing.T, opts storetest.Options) broker.Store {
			return newStore(t, redis.Config{ClusterAddrs: cl.Addrs(), HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL, HistoryFor: opts.HistoryFor})
		})
	})
}

// newStore opens a store closed at cleanup and waits until it is healthy.
func newStore(t *testing.T, cfg redis.Config) *redis.Store {
	t.Helper()
	s, err := redis.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	testkit.Eventually(t, 10*time.Second, s.Healthy)
	return s
}
