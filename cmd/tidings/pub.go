package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tidings-io/tidings/client"
)

func runPub(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return usagef("name a topic and, optionally, the data")
	}
	topic := args[0]
	count := flagValue[int](fs, "count")
	rate := flagValue[float64](fs, "rate")
	batch := flagValue[int](fs, "batch")
	if count < 1 || rate < 0 || batch < 1 {
		return usagef("--count and --batch must be at least 1, --rate not negative")
	}
	c, err := g.client()
	if err != nil {
		return usagef("%v", err)
	}
	if len(args) == 2 && args[1] == "-" {
		return pubLines(ctx, e, c, topic, batch)
	}
	var data json.RawMessage
	if len(args) == 2 {
		data = json.RawMessage(args[1])
		if !json.Valid(data) {
			return usagef("the data is not JSON: quote a string as '\"text\"'")
		}
	}
	var tick <-chan time.Time
	if rate > 0 && count > 1 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	for i := 1; i <= count; i++ {
		if tick != nil && i > 1 {
			select {
			case <-tick:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		d := data
		if d == nil {
			d = json.RawMessage(fmt.Sprint(i))
		}
		p, err := c.Publish(ctx, topic, d)
		if err != nil {
			return err
		}
		if count == 1 {
			fmt.Fprintf(e.stdout, "%s offset %d epoch %s id %s\n", p.Topic, p.Offset, p.Epoch, p.ID)
		}
	}
	if count > 1 {
		d := time.Since(start)
		fmt.Fprintf(e.stdout, "published %d messages to %s in %v (%.0f msgs/s)\n", count, topic, d.Round(time.Millisecond), float64(count)/d.Seconds())
	}
	return nil
}

// pubLines publishes each line of stdin (JSON, or text sent as a JSON
// string) to topic, batch lines to a request.
func pubLines(ctx context.Context, e env, c *client.Client, topic string, batch int) error {
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var msgs []client.Message
	total := 0
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		ps, err := c.PublishBatch(ctx, msgs)
		if err != nil {
			return err
		}
		total += len(ps)
		msgs = msgs[:0]
		return nil
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var data any = json.RawMessage(line)
		if !json.Valid([]byte(line)) {
			data = line
		}
		msgs = append(msgs, client.Message{Topic: topic, Data: data})
		if len(msgs) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "published %d messages to %s\n", total, topic)
	return nil
}
