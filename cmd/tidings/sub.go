package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidings-io/tidings/client"
)

// subLine is what sub prints of a message.
type subLine struct {
	Topic  string          `json:"topic"`
	ID     string          `json:"id"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Time   time.Time       `json:"time"`
	Sub    string          `json:"sub,omitempty"`
	Data   json.RawMessage `json:"data"`
}

func runSub(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("name at least one topic or pattern")
	}
	raw := flagValue[bool](fs, "raw")
	count := flagValue[int](fs, "count")
	opts := client.SubscribeOptions{OnReset: func(r client.Reset) {
		fmt.Fprintf(e.stderr, "reset %s: %s, the stream goes on after %d@%s\n", r.Topic, r.Reason, r.Offset, r.Epoch)
	}}
	if s := fs.Lookup("since").Value.String(); s != "" {
		pos, err := parsePosition(s)
		if err != nil {
			return err
		}
		opts.Since = map[string]client.Position{}
		for _, p := range args {
			if !strings.ContainsAny(p, "*>") {
				opts.Since[p] = pos
			}
		}
	}
	c, err := g.client()
	if err != nil {
		return usagef("%v", err)
	}
	sub, err := c.Subscribe(ctx, args, opts)
	if err != nil {
		return err
	}
	defer sub.Close()
	n := 0
	for d := range sub.C() {
		if raw {
			fmt.Fprintf(e.stdout, "%s\n", d.Data)
		} else {
			line, err := json.Marshal(subLine{Topic: d.Topic, ID: d.ID, Offset: d.Offset, Epoch: d.Epoch, Time: d.Time, Sub: d.Sub, Data: d.Data})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\n", line)
		}
		if n++; count > 0 && n >= count {
			return nil
		}
	}
	if err := sub.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// parsePosition reads OFFSET@EPOCH.
func parsePosition(s string) (client.Position, error) {
	off, epoch, ok := strings.Cut(s, "@")
	n, err := strconv.ParseUint(off, 10, 64)
	if !ok || err != nil || epoch == "" {
		return client.Position{}, usagef("--since %q: want OFFSET@EPOCH, as 41@c930f582", s)
	}
	return client.Position{Offset: n, Epoch: epoch}, nil
}
