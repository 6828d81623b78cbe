package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
)

// evalshaStats reads EVALSHA's calls and microseconds from INFO
// commandstats. A script's usec include the commands it runs.
func evalshaStats(b *testing.B, srv *redistest.Server) (calls, usec float64) {
	b.Helper()
	info, err := srv.Client().Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_evalsha:calls=(\d+),usec=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0, 0
	}
	calls, _ = strconv.ParseFloat(m[1], 64)
	usec, _ = strconv.ParseFloat(m[2], 64)
	return calls, usec
}

// floorStore starts a Redis and opens a store on it, closed at cleanup.
func floorStore(b *testing.B) (*redistest.Server, *Store) {
	srv := redistest.Start(b)
	s, err := New(Config{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return srv, s
}

// BenchmarkScriptFloor measures what Redis costs a publish: the loopback
// round trip (median PING) and the publish script's CPU in Redis per
// message (INFO commandstats) at batch sizes 1, 10 and 100, 100-byte
// messages on one topic.
func BenchmarkScriptFloor(b *testing.B) {
	srv, s := floorStore(b)
	ctx := context.Background()
	b.Run("ping", func(b *testing.B) {
		c := srv.Client()
		var rtts []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			rtts = append(rtts, time.Since(start))
		}
		slices.Sort(rtts)
		b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "rtt-µs-p50")
	})
	data := json.RawMessage(`"` + strings.Repeat("x", 98) + `"`)
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			msgs := make([]*broker.Message, n)
			fill := func() {
				for i := range msgs {
					msgs[i] = &broker.Message{ID: uuid.NewString(), Topic: "floor", Time: time.Now(), Data: data}
				}
			}
			fill()
			if err := s.Publish(ctx, msgs); err != nil { // loads the script
				b.Fatal(err)
			}
			calls0, usec0 := evalshaStats(b, srv)
			b.ReportAllocs()
			for b.Loop() {
				fill()
				if err := s.Publish(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := b.Elapsed()
			calls1, usec1 := evalshaStats(b, srv)
			calls, usec := calls1-calls0, usec1-usec0
			msgCount := float64(b.N * n)
			b.ReportMetric(usec/calls/float64(n), "redis-µs/msg(per-call)")
			b.ReportMetric(usec/msgCount, "redis-µs/msg(total)")
			b.ReportMetric(float64(elapsed.Microseconds())/msgCount, "wall-µs/msg")
			b.ReportMetric(msgCount/elapsed.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkPublishCoalesced runs 32 publishers of one 100-byte message
// each, on topics of their own, on one Redis and on a 3-master cluster,
// with coalescing on and off: msgs/s, round trips per message (on a
// cluster, pipelines to a master) and the scripts' CPU in Redis per
// message (summed over the masters).
func BenchmarkPublishCoalesced(b *testing.B) {
	srv := redistest.Start(b)
	cl := redistest.StartCluster(b)
	data := json.RawMessage(`"` + strings.Repeat("x", 98) + `"`)
	setups := []struct {
		name    string
		cfg     Config
		servers []*redistest.Server
	}{
		{"redis=single", Config{URL: srv.URL()}, []*redistest.Server{srv}},
		{"redis=cluster", Config{ClusterAddrs: cl.Addrs()}, cl.Nodes},
	}
	redisUsec := func(servers []*redistest.Server) float64 {
		total := 0.0
		for _, srv := range servers {
			_, usec := evalshaStats(b, srv)
			total += usec
		}
		return total
	}
	for _, setup := range setups {
		for _, mode := range []struct {
			name string
			max  int
		}{{"coalesce=on", DefaultMaxCoalesce}, {"coalesce=off", -1}} {
			b.Run(setup.name+"/"+mode.name, func(b *testing.B) {
				cfg := setup.cfg
				cfg.MaxCoalesce = mode.max
				s, err := New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close() })
				ctx := context.Background()
				if err := publishScript.Load(ctx, s.client).Err(); err != nil {
					b.Fatal(err)
				}
				trips := newTripCounter(false)
				trips.addTo(b, s)
				const publishers = 32
				b.SetParallelism((publishers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				var next atomic.Int64
				usec0 := redisUsec(setup.servers)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					topic := fmt.Sprintf("coalesced.%d", next.Add(1))
					for pb.Next() {
						m := &broker.Message{ID: uuid.NewString(), Topic: topic, Time: time.Now(), Data: data}
						if err := s.Publish(ctx, []*broker.Message{m}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				n, _ := trips.count()
				usec1 := redisUsec(setup.servers)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(n)/float64(b.N), "trips/msg")
				b.ReportMetric((usec1-usec0)/float64(b.N), "redis-µs/msg")
			})
		}
	}
}

// commandUsec reads every command's microseconds from INFO commandstats
// (a script's include the commands it runs) and Redis' process CPU from
// INFO cpu, in microseconds.
func commandUsec(b *testing.B, srv *redistest.Server) (map[string]float64, float64) {
	b.Helper()
	info, err := srv.Client().Info(context.Background(), "commandstats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	usec := map[string]float64{}
	for _, m := range regexp.MustCompile(`cmdstat_(\w+):calls=\d+,usec=(\d+)`).FindAllStringSubmatch(info, -1) {
		usec[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	cpu := 0.0
	for _, m := range regexp.MustCompile(`used_cpu_(?:user|sys):([\d.]+)`).FindAllStringSubmatch(info, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		cpu += v * 1e6
	}
	return usec, cpu
}

// BenchmarkScriptFloorTopics is the Redis floor of publishes spread over
// 5 000 topics, each message of a batch on a topic of its own, with a
// subscriber on every topic's channel: Redis' process CPU per message
// (INFO cpu: commands, replies, pub/sub writes), the script's share
// (commandstats), and each command the script runs, per message.
func BenchmarkScriptFloorTopics(b *testing.B) {
	const topics = 5000
	srv, s := floorStore(b)
	ctx := context.Background()
	channels := make([]string, topics)
	for i := range channels {
		channels[i] = s.keys(fmt.Sprintf("floor.%d", i))[2]
	}
	sub := srv.Client().Subscribe(ctx, channels...)
	b.Cleanup(func() { _ = sub.Close() })
	go func() {
		for range sub.Channel(goredis.WithChannelSize(4096)) {
		}
	}()
	data := json.RawMessage(`"` + strings.Repeat("x", 98) + `"`)
	next := 0
	for _, n := range []int{1, 10, 50, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			msgs := make([]*broker.Message, n)
			fill := func() {
				for i := range msgs {
					msgs[i] = &broker.Message{ID: uuid.NewString(), Topic: fmt.Sprintf("floor.%d", next%topics), Time: time.Now(), Data: data}
					next++
				}
			}
			fill()
			if err := s.Publish(ctx, msgs); err != nil { // loads the script
				b.Fatal(err)
			}
			usec0, cpu0 := commandUsec(b, srv)
			for b.Loop() {
				fill()
				if err := s.Publish(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			usec1, cpu1 := commandUsec(b, srv)
			count := float64(b.N * n)
			b.ReportMetric((cpu1-cpu0)/count, "redis-cpu-µs/msg")
			inner := 0.0
			for cmd, u := range usec1 {
				d := (u - usec0[cmd]) / count
				if cmd == "evalsha" || cmd == "info" || d < 0.05 {
					continue
				}
				inner += d
				b.ReportMetric(d, cmd+"-µs/msg")
			}
			b.ReportMetric((usec1["evalsha"]-usec0["evalsha"])/count, "script-µs/msg")
			b.ReportMetric((usec1["evalsha"]-usec0["evalsha"])/count-inner, "lua-µs/msg")
		})
	}
}
