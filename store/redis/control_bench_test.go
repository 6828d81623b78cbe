package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/control"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/store/redis"
)

// benchInfo is a ~40-byte info claim, as a token might carry.
var benchInfo = json.RawMessage(`{"name":"Ada Lovelace","role":"editor"}`)

// newBenchStore opens a store on a fresh redis-server, closed at cleanup.
func newBenchStore(b *testing.B) (*redistest.Server, *redis.Store) {
	b.Helper()
	srv := redistest.Start(b)
	s, err := redis.New(redis.Config{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return srv, s
}

// benchEntries returns n entries over the given number of topics, with a
// user per two sessions.
func benchEntries(prefix string, n, topics int) []control.PresenceEntry {
	out := make([]control.PresenceEntry, n)
	for i := range out {
		out[i] = control.PresenceEntry{
			Topic:   fmt.Sprintf("%s.%d", prefix, i%topics),
			Session: fmt.Sprintf("%08x-5e55-4a1d-9c1e-%012x", i, i),
			User:    fmt.Sprintf("user-%d", i/2),
			Info:    benchInfo,
			Node:    "node-1",
		}
	}
	return out
}

// fill adds entries in batches of 1000.
func fill(b *testing.B, s *redis.Store, entries []control.PresenceEntry, ttl time.Duration) {
	b.Helper()
	for i := 0; i < len(entries); i += 1000 {
		u := control.PresenceUpdate{Add: entries[i:min(i+1000, len(entries))], TTL: ttl}
		if err := s.UpdatePresence(context.Background(), u); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresenceUpdate refreshes 1000 entries over 100 topics in one
// UpdatePresence: the steady state of a node, which adds every entry it
// holds again each refresh interval.
func BenchmarkPresenceUpdate(b *testing.B) {
	_, s := newBenchStore(b)
	entries := benchEntries("bench.update", 1000, 100)
	u := control.PresenceUpdate{Add: entries, TTL: 30 * time.Second}
	ctx := context.Background()
	if err := s.UpdatePresence(ctx, u); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.UpdatePresence(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/entry")
}

// BenchmarkPresenceStats counts a topic of 100 000 sessions.
func BenchmarkPresenceStats(b *testing.B) {
	_, s := newBenchStore(b)
	entries := benchEntries("bench.stats", 100_000, 1)
	fill(b, s, entries, time.Hour)
	ctx := context.Background()
	want := control.PresenceStats{Sessions: 100_000, Users: 50_000}
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.PresenceStats(ctx, entries[0].Topic)
		if err != nil {
			b.Fatal(err)
		}
		if st != want {
			b.Fatalf("stats = %+v, want %+v", st, want)
		}
	}
}

// BenchmarkPresenceFootprint reports the bytes Redis holds per presence
// entry (MEMORY USAGE of a topic's three keys over its entries), for
// 100 000 entries with a ~40-byte info and a user per two sessions. The
// time it reports is that of filling the topic.
func BenchmarkPresenceFootprint(b *testing.B) {
	srv, s := newBenchStore(b)
	c := srv.Client()
	ctx := context.Background()
	const n = 100_000
	for i := 0; b.Loop(); i++ {
		entries := benchEntries(fmt.Sprintf("bench.footprint.%d", i), n, 1)
		fill(b, s, entries, time.Hour)
		b.StopTimer()
		tag := "tidings:{" + entries[0].Topic + "}:presence"
		var total int64
		for _, k := range []string{tag, tag + ":exp", tag + ":users"} {
			m, err := c.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			total += m
		}
		value, err := c.HGet(ctx, tag, entries[0].Session).Result()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(total)/n, "bytes/entry")
		b.ReportMetric(float64(len(value)), "json-bytes/entry")
		if err := c.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

var cmdstat = regexp.MustCompile(`cmdstat_([a-z|]+):calls=(\d+)`)

// serverLoad returns the commands Redis has run (those that scripts call
// included, INFO not), EVALSHA among them, and the CPU it has used.
func serverLoad(b *testing.B, c *goredis.Client) (cmds, evalsha int, cpu time.Duration) {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range cmdstat.FindAllStringSubmatch(info, -1) {
		n, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "info":
		case "evalsha":
			evalsha = n
			cmds += n
		default:
			cmds += n
		}
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			cpu += time.Duration(f * float64(time.Second))
		}
	}
	return cmds, evalsha, cpu
}

// BenchmarkPresenceRefresh refreshes 10 000 sessions, each added again
// once per refresh in one UpdatePresence, over 100 topics or one topic
// per session. It reports Redis's work per refresh: commands (those the
// scripts call included), EVALSHA calls (client operations) and CPU, and
// the commands per second at a 10 s refresh interval (TTL/3 of the
// default 30 s TTL).
func BenchmarkPresenceRefresh(b *testing.B) {
	const sessions = 10_000
	const interval = 10 * time.Second
	for _, topics := range []int{100, sessions} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) {
			srv, s := newBenchStore(b)
			c := srv.Client()
			entries := benchEntries("bench.refresh", sessions, topics)
			u := control.PresenceUpdate{Add: entries, TTL: 3 * interval}
			ctx := context.Background()
			if err := s.UpdatePresence(ctx, u); err != nil {
				b.Fatal(err)
			}
			cmds0, eval0, cpu0 := serverLoad(b, c)
			for b.Loop() {
				if err := s.UpdatePresence(ctx, u); err != nil {
					b.Fatal(err)
				}
			}
			cmds1, eval1, cpu1 := serverLoad(b, c)
			n := float64(b.N)
			perRefresh := float64(cmds1-cmds0) / n
			b.ReportMetric(perRefresh, "redis-cmds/refresh")
			b.ReportMetric(float64(eval1-eval0)/n, "evalsha/refresh")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/n/1000, "redis-cpu-ms/refresh")
			b.ReportMetric(perRefresh/interval.Seconds(), "redis-cmds/s@10s")
		})
	}
}
