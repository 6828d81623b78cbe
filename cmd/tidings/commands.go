package main

import (
	"flag"
	"time"
)

// commands lists the subcommands by name: what each does, its arguments
// and an example, for the help; its flags and what it runs.
var commands = map[string]*command{
	"sub": {
		summary: "subscribe to topics and patterns and print their messages as they arrive, resuming across reconnects",
		usage:   "PATTERN... [--since OFFSET@EPOCH] [--raw] [--count N]",
		example: "tidings sub 'prices.>' chat.lobby --since 41@c930f582",
		flags:   subFlags,
		run:     runSub,
	},
	"pub": {
		summary: "publish a message (DATA, or one per line of stdin with -), or --count messages at --rate",
		usage:   "TOPIC [DATA|-] [--count N --rate R]",
		example: "tidings pub prices.eur.usd '{\"bid\":1.0842}'\nseq 10 | tidings pub counter.t -\ntidings pub load.t --count 10000 --rate 2000",
		flags:   pubFlags,
		run:     runPub,
	},
	"token": {
		summary: "mint a session token (HS256), or check one with the broker's key settings (token check TOKEN)",
		usage:   "--secret KEY --sub USER [--subscribe PAT]... [--publish PAT]... [--ttl 1h] | check TOKEN --secret KEY",
		example: "tidings token --secret \"$TIDINGS_JWT_KEY\" --sub alice --subscribe 'chat.>' --publish chat.lobby --ttl 1h\ntidings token check \"$TOKEN\" --secret \"$TIDINGS_JWT_KEY\"",
		flags:   tokenFlags,
		run:     runToken,
	},
	"info": {
		summary: "list the live nodes of the cluster with their figures (GET /v1/info)",
		usage:   "",
		example: "tidings info --url http://localhost:8080 --api-key \"$ADMIN_KEY\"",
		run:     runInfo,
	},
	"presence": {
		summary: "list the sessions on a topic (GET /v1/presence), or count them with --stats",
		usage:   "TOPIC [--stats]",
		example: "tidings presence chat.lobby\ntidings presence chat.lobby --stats",
		flags:   presenceFlags,
		run:     runPresence,
	},
	"history": {
		summary: "print a topic's messages still in history (GET /v1/history)",
		usage:   "TOPIC [--since OFFSET@EPOCH] [--limit N] [--reverse]",
		example: "tidings history chat.lobby --limit 20\ntidings history chat.lobby --since 41@c930f582",
		flags:   historyFlags,
		run:     runHistory,
	},
	"topics": {
		summary: "list the topics with subscribers on any node, busiest first (GET /v1/topics)",
		usage:   "[PATTERN] [--limit N]",
		example: "tidings topics 'chat.>' --limit 10",
		flags:   topicsFlags,
		run:     runTopics,
	},
	"disconnect": {
		summary: "close the sessions of a user, or one session, on every node (POST /v1/disconnect)",
		usage:   "--user U | --session S [--code 4000-4999] [--reason TEXT]",
		example: "tidings disconnect --user alice --code 4500 --reason 'account closed'",
		flags:   disconnectFlags,
		run:     runDisconnect,
	},
	"revoke": {
		summary: "refuse a user's tokens, or one token by its jti, until a time, and close their sessions (POST /v1/revoke)",
		usage:   "--user U | --jti J [--until RFC3339]",
		example: "tidings revoke --jti 4f1c2d --until 2030-01-01T00:00:00Z",
		flags:   revokeFlags,
		run:     runRevoke,
	},
	"config": {
		summary: "check a broker config file (config check FILE), or print a commented example (config example)",
		usage:   "check FILE | example",
		example: "tidings config example > tidings.yaml\ntidings config check tidings.yaml",
		run:     runConfig,
	},
	"bench": {
		summary: "measure a broker: publish over HTTP, receive on WebSocket subscribers, print rates and latency percentiles",
		usage:   "[--msgs N] [--rate R] [--subs S] [--size BYTES] [--pubs P] [--batch B]",
		example: "tidings bench --msgs 10000 --subs 4 --size 128\ntidings bench --url https://broker.example --api-key \"$KEY\" --token \"$TOKEN\" --rate 1000",
		flags:   benchFlags,
		run:     runBench,
	},
}

// The commands' own flags, registered before parsing; each command's run
// reads them with flagValue.

func subFlags(fs *flag.FlagSet) {
	fs.String("since", "", "resume the exact topics after OFFSET@EPOCH")
	fs.Bool("raw", false, "print each message's data only (default: the whole message as a JSON line)")
	fs.Bool("json", false, "print each message as a JSON line (the default)")
	fs.Int("count", 0, "exit after this many messages (0: run until Ctrl-C)")
}

func pubFlags(fs *flag.FlagSet) {
	fs.Int("count", 1, "publish the message this many times (the data gets a sequence number when it is not given)")
	fs.Float64("rate", 0, "messages per second with --count (0: as fast as the broker answers)")
	fs.Int("batch", 100, "messages per request when reading stdin")
}

func tokenFlags(fs *flag.FlagSet) {
	fs.String("secret", "", "HMAC secret, as the broker's -jwt-key (env TIDINGS_JWT_KEY)")
	fs.String("sub", "", "the user (sub claim)")
	fs.Var(&listFlag{}, "subscribe", "a pattern the token may subscribe to (repeat, or comma-separated)")
	fs.Var(&listFlag{}, "publish", "a topic pattern the token may publish to (repeat, or comma-separated)")
	fs.Var(&listFlag{}, "channels", "an exact topic the session is subscribed to at connect (repeat, or comma-separated)")
	fs.String("info", "", "the info claim: a JSON object shown in presence and join/leave")
	fs.String("jti", "", "the token id (jti claim), which a revocation can name")
	fs.Duration("ttl", time.Hour, "how long the token is valid")
	fs.String("audience", "", "aud claim (mint), or the audience to require (check), as -jwt-audience")
	fs.String("issuer", "", "iss claim (mint), or the issuer to require (check), as -jwt-issuer")
	fs.String("public-key-file", "", "check: PEM public key, as the broker's -jwt-public-key-file")
	fs.String("jwks-url", "", "check: JSON Web Key Set URL, as the broker's -jwt-jwks-url")
}

func presenceFlags(fs *flag.FlagSet) {
	fs.Bool("stats", false, "print the numbers of sessions and users only")
}

func historyFlags(fs *flag.FlagSet) {
	fs.String("since", "", "the messages after OFFSET@EPOCH")
	fs.Int("limit", 0, "at most this many messages (1-1000; default 100)")
	fs.Bool("reverse", false, "newest first")
}

func topicsFlags(fs *flag.FlagSet) {
	fs.Int("limit", 100, "at most this many topics")
}

func disconnectFlags(fs *flag.FlagSet) {
	fs.String("user", "", "every session of this user")
	fs.String("session", "", "the session with this id")
	fs.Int("code", 0, "close code: 4000-4499 clients reconnect, 4500-4999 they stop (default 4000)")
	fs.String("reason", "", "close reason")
}

func revokeFlags(fs *flag.FlagSet) {
	fs.String("user", "", "every token of this user")
	fs.String("jti", "", "the token with this id")
	fs.String("until", "", "RFC 3339 time (default: the broker's -revoke-for from now)")
}

func benchFlags(fs *flag.FlagSet) {
	fs.Int("msgs", 1000, "messages to publish")
	fs.Float64("rate", 0, "messages per second (0: as fast as the publishers go)")
	fs.Int("subs", 1, "WebSocket subscribers, each receiving every message")
	fs.Int("pubs", 2, "concurrent publishers")
	fs.Int("batch", 1, "messages per publish request")
	fs.Int("size", 64, "bytes of padding in each message")
	fs.String("topic", "", "topic (default: bench.<random>)")
}
