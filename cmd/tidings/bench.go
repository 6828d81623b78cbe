package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/client"
)

// benchData is a bench message: when it was published, and padding.
type benchData struct {
	N   int    `json:"n"`
	TS  int64  `json:"ts"`
	Pad string `json:"pad,omitempty"`
}

func runBench(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	num := func(name string) int { return flagValue[int](fs, name) }
	msgs, subs, pubs, batch, size := num("msgs"), num("subs"), num("pubs"), num("batch"), num("size")
	rate := flagValue[float64](fs, "rate")
	if msgs < 1 || subs < 0 || pubs < 1 || batch < 1 || size < 0 || rate < 0 {
		return usagef("--msgs, --pubs and --batch must be at least 1; --subs, --size and --rate not negative")
	}
	topic := str(fs, "topic")
	if topic == "" {
		topic = "bench." + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	}
	c, err := g.client()
	if err != nil {
		return usagef("%v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Subscribers first: Subscribe returns once the broker has answered
	// the subscription, so none misses the first message.
	var (
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	received := make(chan struct{}, 1)
	var got int
	for i := 0; i < subs; i++ {
		sub, err := c.Subscribe(ctx, []string{topic}, client.SubscribeOptions{Buffer: 4096})
		if err != nil {
			return err
		}
		defer sub.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for d := range sub.C() {
				var b benchData
				if json.Unmarshal(d.Data, &b) != nil || b.N == 0 {
					continue // not a bench message
				}
				lat := time.Since(time.Unix(0, b.TS))
				mu.Lock()
				latencies = append(latencies, lat)
				got++
				mu.Unlock()
				select {
				case received <- struct{}{}:
				default:
				}
				if n++; n == msgs {
					return
				}
			}
		}()
	}
	pad := strings.Repeat("x", size)
	start := time.Now()
	next := make(chan int)
	var pubErr error
	var pubWG sync.WaitGroup
	var errOnce sync.Once
	for p := 0; p < pubs; p++ {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for first := range next {
				var ms []client.Message
				for n := first; n < first+batch && n <= msgs; n++ {
					ms = append(ms, client.Message{Topic: topic, Data: benchData{N: n, TS: time.Now().UnixNano(), Pad: pad}})
				}
				if _, err := c.PublishBatch(ctx, ms); err != nil {
					errOnce.Do(func() { pubErr = err; cancel() })
					return
				}
			}
		}()
	}
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) * float64(batch) / rate))
		defer t.Stop()
		tick = t.C
	}
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
feed:
	for n := 1; n <= msgs; n += batch {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case next <- n:
		case <-ctx.Done():
			break feed
		}
		select {
		case <-progress.C:
			mu.Lock()
			fmt.Fprintf(e.stderr, "\rpublished %d/%d, received %d/%d", n, msgs, got, msgs*subs)
			mu.Unlock()
		default:
		}
	}
	close(next)
	pubWG.Wait()
	published := time.Since(start)
	if pubErr != nil {
		return pubErr
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-received:
		case <-progress.C:
			mu.Lock()
			fmt.Fprintf(e.stderr, "\rpublished %d/%d, received %d/%d", msgs, msgs, got, msgs*subs)
			mu.Unlock()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	total := time.Since(start)
	fmt.Fprintf(e.stderr, "\r%*s\r", 60, "")
	fmt.Fprintf(e.stdout, "topic %s: %d messages of %d bytes, %d publishers (batch %d), %d subscribers\n", topic, msgs, size, pubs, batch, subs)
	fmt.Fprintf(e.stdout, "published %.0f msgs/s (%v)\n", float64(msgs)/published.Seconds(), published.Round(time.Millisecond))
	if subs > 0 {
		slices.Sort(latencies)
		pct := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
		fmt.Fprintf(e.stdout, "delivered %.0f msgs/s (%d in %v)\n", float64(len(latencies))/total.Seconds(), len(latencies), total.Round(time.Millisecond))
		fmt.Fprintf(e.stdout, "latency p50 %v p90 %v p99 %v max %v\n", pct(0.5).Round(time.Microsecond), pct(0.9).Round(time.Microsecond),
			pct(0.99).Round(time.Microsecond), latencies[len(latencies)-1].Round(time.Microsecond))
	}
	return nil
}
