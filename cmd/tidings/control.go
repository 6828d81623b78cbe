package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/tidings-io/tidings/client"
)

// The server API's commands print the broker's answer as indented JSON.

func runInfo(ctx context.Context, e env, g *globals, _ *flag.FlagSet, args []string) error {
	return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) { return c.Info(ctx) })
}

func runPresence(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	stats := flagValue[bool](fs, "stats")
	return serverCall(ctx, e, g, args, 1, func(c *client.Client) (any, error) {
		if stats {
			return c.PresenceStats(ctx, args[0])
		}
		return c.Presence(ctx, args[0])
	})
}

func runHistory(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	opts := client.HistoryOptions{Limit: flagValue[int](fs, "limit"),
		Reverse: flagValue[bool](fs, "reverse")}
	if s := str(fs, "since"); s != "" {
		pos, err := parsePosition(s)
		if err != nil {
			return err
		}
		opts.Since = &pos
	}
	return serverCall(ctx, e, g, args, 1, func(c *client.Client) (any, error) { return c.History(ctx, args[0], opts) })
}

func runTopics(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	pattern := ""
	if len(args) == 1 {
		pattern = args[0]
		args = nil
	}
	limit := flagValue[int](fs, "limit")
	return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) { return c.Topics(ctx, pattern, limit) })
}

func runDisconnect(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	t := client.Target{User: str(fs, "user"), Session: str(fs, "session")}
	if (t.User == "") == (t.Session == "") {
		return usagef("name exactly one of --user and --session")
	}
	code := flagValue[int](fs, "code")
	return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) {
		return struct{}{}, c.Disconnect(ctx, t, code, str(fs, "reason"))
	})
}

func runRevoke(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
	r := client.Revocation{User: str(fs, "user"), JTI: str(fs, "jti")}
	if (r.User == "") == (r.JTI == "") {
		return usagef("name exactly one of --user and --jti")
	}
	if u := str(fs, "until"); u != "" {
		t, err := time.Parse(time.RFC3339, u)
		if err != nil {
			return usagef("--until: want an RFC 3339 time, as 2030-01-01T00:00:00Z")
		}
		r.Until = t
	}
	return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) { return struct{}{}, c.Revoke(ctx, r) })
}

// serverCall checks that args has nargs arguments, makes the call and
// prints its answer.
func serverCall(_ context.Context, e env, g *globals, args []string, nargs int, call func(*client.Client) (any, error)) error {
	if len(args) != nargs {
		if nargs == 0 {
			return usagef("unexpected argument %q", args[0])
		}
		return usagef("name the topic")
	}
	c, err := g.client()
	if err != nil {
		return usagef("%v", err)
	}
	v, err := call(c)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", out)
	return nil
}
