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

var infoCommand = &command{
	summary: "list the live nodes of the cluster with their figures (GET /v1/info)",
	usage:   "",
	example: "tidings info --url http://localhost:8080 --api-key \"$ADMIN_KEY\"",
	run: func(ctx context.Context, e env, g *globals, _ *flag.FlagSet, args []string) error {
		return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) { return c.Info(ctx) })
	},
}

var presenceCommand = &command{
	summary: "list the sessions on a topic (GET /v1/presence), or count them with --stats",
	usage:   "TOPIC [--stats]",
	example: "tidings presence chat.lobby\ntidings presence chat.lobby --stats",
	flags:   func(fs *flag.FlagSet) { fs.Bool("stats", false, "print the numbers of sessions and users only") },
	run: func(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
		stats := flagValue[bool](fs, "stats")
		return serverCall(ctx, e, g, args, 1, func(c *client.Client) (any, error) {
			if stats {
				return c.PresenceStats(ctx, args[0])
			}
			return c.Presence(ctx, args[0])
		})
	},
}

var historyCommand = &command{
	summary: "print a topic's messages still in history (GET /v1/history)",
	usage:   "TOPIC [--since OFFSET@EPOCH] [--limit N] [--reverse]",
	example: "tidings history chat.lobby --limit 20\ntidings history chat.lobby --since 41@c930f582",
	flags: func(fs *flag.FlagSet) {
		fs.String("since", "", "the messages after OFFSET@EPOCH")
		fs.Int("limit", 0, "at most this many messages (1-1000; default 100)")
		fs.Bool("reverse", false, "newest first")
	},
	run: func(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
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
	},
}

var topicsCommand = &command{
	summary: "list the topics with subscribers on any node, busiest first (GET /v1/topics)",
	usage:   "[PATTERN] [--limit N]",
	example: "tidings topics 'chat.>' --limit 10",
	flags:   func(fs *flag.FlagSet) { fs.Int("limit", 100, "at most this many topics") },
	run: func(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
		pattern := ""
		if len(args) == 1 {
			pattern = args[0]
			args = nil
		}
		limit := flagValue[int](fs, "limit")
		return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) { return c.Topics(ctx, pattern, limit) })
	},
}

var disconnectCommand = &command{
	summary: "close the sessions of a user, or one session, on every node (POST /v1/disconnect)",
	usage:   "--user U | --session S [--code 4000-4999] [--reason TEXT]",
	example: "tidings disconnect --user alice --code 4500 --reason 'account closed'",
	flags: func(fs *flag.FlagSet) {
		fs.String("user", "", "every session of this user")
		fs.String("session", "", "the session with this id")
		fs.Int("code", 0, "close code: 4000-4499 clients reconnect, 4500-4999 they stop (default 4000)")
		fs.String("reason", "", "close reason")
	},
	run: func(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
		t := client.Target{User: str(fs, "user"), Session: str(fs, "session")}
		if (t.User == "") == (t.Session == "") {
			return usagef("name exactly one of --user and --session")
		}
		code := flagValue[int](fs, "code")
		return serverCall(ctx, e, g, args, 0, func(c *client.Client) (any, error) {
			return struct{}{}, c.Disconnect(ctx, t, code, str(fs, "reason"))
		})
	},
}

var revokeCommand = &command{
	summary: "refuse a user's tokens, or one token by its jti, until a time, and close their sessions (POST /v1/revoke)",
	usage:   "--user U | --jti J [--until RFC3339]",
	example: "tidings revoke --jti 4f1c2d --until 2030-01-01T00:00:00Z",
	flags: func(fs *flag.FlagSet) {
		fs.String("user", "", "every token of this user")
		fs.String("jti", "", "the token with this id")
		fs.String("until", "", "RFC 3339 time (default: the broker's -revoke-for from now)")
	},
	run: func(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error {
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
	},
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
