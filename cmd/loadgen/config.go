//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// scenarios lists the presets, in the order `-scenario all` runs them.
var scenarios = []string{"idle", "broadcast", "fanout-many", "wildcard", "churn", "cluster"}

// config is the loadgen's command line after presets.
type config struct {
	scenario      string
	url           string
	brokerBin     string
	brokerPID     int
	brokerArgs    []string
	conns         []int
	maxConns      int
	duration      time.Duration
	stepDuration  time.Duration
	timeout       time.Duration
	rate          float64   // messages per second (fixed-rate scenarios)
	rates         []float64 // deliveries per second (broadcast ladder)
	p99Limit      time.Duration
	topics        int
	perConn       int
	payload       int
	batchInterval time.Duration
	readBuffer    int
	workers       int
	perIP         int
	nodes         int
	churnRate     float64
	churnLife     time.Duration
	redisBin      string
	runs          int
	svg           string
	profileDir    string
	quiet         bool
	markdown      bool
	client        string
	replot        string
	batch         int      // messages per publish request; 0: one batch per -batch-interval
	publishers    int      // publish requests in flight at most
	clusterPhases []string // cluster phases to run, in canonical order
	batches       []int    // cluster: batch sizes of the cross-node sweep
	redisCluster  bool     // cluster: a 3-master Redis Cluster instead of one redis-server
}

// preset is a scenario's defaults; a flag given on the command line wins.
type preset struct {
	conns, rate, rates, duration, topics, perConn, readBuffer string
}

var presets = map[string]preset{
	"idle":        {conns: "10000,50000", duration: "5s", readBuffer: "1024"},
	"broadcast":   {conns: "1000,10000", rates: "10k,20k,50k,100k,200k,400k,600k,800k,1M,1.5M,2M", duration: "5s", readBuffer: "65536"},
	"fanout-many": {conns: "10000", rate: "10000", duration: "10s", topics: "10000", perConn: "10", readBuffer: "16384"},
	"wildcard":    {conns: "5000", rate: "400", duration: "10s", topics: "10000", readBuffer: "16384"},
	"churn":       {conns: "1000", rate: "100", duration: "10s", readBuffer: "16384"},
	"cluster":     {conns: "1000", rate: "100", duration: "10s", readBuffer: "16384"},
}

// usageHead comes before the flags in -h.
const usageHead = `Usage: loadgen -scenario NAME [flags]

Examples:
  loadgen -scenario broadcast -conns 10000 -runs 3
  loadgen -scenario cluster -batch 1 -publishers 32
  loadgen -scenario cluster -conns 1000 -topics 5000 -subs-per-conn 5 -cluster-phases cross
  loadgen -scenario cluster -cluster-phases cross -rates 1k,5k,20k,50k -runs 3
  loadgen -scenario cluster -cluster-phases cross -rate 5000 -batches 1,10,50,100 -svg cost.svg
  loadgen -scenario cluster -redis-cluster

Flags:
`

// errUsage marks a bad command line (exit status 2).
var errUsage = errors.New("usage")

type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }
func (e usageErr) Unwrap() error { return errUsage }

func badFlag(name, format string, args ...any) error {
	return usageErr{fmt.Sprintf("invalid value for -%s: %s", name, fmt.Sprintf(format, args...))}
}

// newFlagSet declares every flag; the string-typed ones are parsed after.
func newFlagSet(c *config, raw map[string]*string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.scenario, "scenario", "", "scenario preset: "+strings.Join(scenarios, ", ")+" (required)")
	fs.StringVar(&c.url, "url", "", "WebSocket URL of a running broker (ws://127.0.0.1:PORT/v1/ws); default: start one")
	fs.StringVar(&c.brokerBin, "broker-bin", "", "broker binary to start (default: go build ./cmd/broker into a temp dir)")
	fs.IntVar(&c.brokerPID, "broker-pid", 0, "pid of the -url broker, for RSS and CPU (default: the process listening on its port)")
	raw["broker-args"] = fs.String("broker-args", "", "extra broker flags, space-separated (e.g. \"-queue-size 4096 -heartbeat 25s\")")
	raw["conns"] = fs.String("conns", "", "subscriber connections, a comma-separated list runs each size (preset per scenario)")
	fs.IntVar(&c.maxConns, "max-connections", 60000, "refuse to open more connections than this (safety bound)")
	raw["duration"] = fs.String("duration", "", "measurement time of a fixed-rate phase, or idle settle time (preset)")
	fs.DurationVar(&c.stepDuration, "step-duration", 0, "publish time of each broadcast rate step (default: -duration)")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "bound on the whole run; it stops on its own after")
	raw["rate"] = fs.String("rate", "", "publish rate in messages/s for fanout-many, wildcard, churn and cluster (preset)")
	raw["rates"] = fs.String("rates", "", "broadcast ladder in deliveries/s, or cluster cross-node ladder in messages/s; comma-separated, k and M suffixes (preset)")
	fs.DurationVar(&c.p99Limit, "p99-limit", 50*time.Millisecond, "broadcast and cluster ladders: a step passes with p99 below this and zero loss")
	raw["topics"] = fs.String("topics", "", "topics of fanout-many, wildcard and cluster (cluster: above 1 spreads the subscriptions over bench.cluster.<n>) (preset)")
	raw["subs-per-conn"] = fs.String("subs-per-conn", "", "topics each fanout-many or cluster connection subscribes to (preset; cluster: 1)")
	fs.IntVar(&c.payload, "payload", 64, "bytes of each publication's data (JSON with the timestamp and padding)")
	fs.DurationVar(&c.batchInterval, "batch-interval", 10*time.Millisecond, "with -batch 0, the publisher sends one HTTP batch per interval")
	raw["read-buffer"] = fs.String("read-buffer", "", "loadgen read buffer per connection in bytes (preset)")
	fs.IntVar(&c.workers, "workers", 0, "worker processes (default: one per 15 000 connections, at least 1)")
	fs.IntVar(&c.perIP, "conns-per-ip", 1000, "connections per source address 127.0.0.2, 127.0.0.3, …")
	fs.IntVar(&c.nodes, "nodes", 0, "idle: independent broker processes to spread connections over (default: as many as the open-file limit needs)")
	fs.Float64Var(&c.churnRate, "churn-rate", 1000, "churn: new connections per second")
	fs.DurationVar(&c.churnLife, "churn-life", 2*time.Second, "churn: how long each churning connection lives")
	fs.StringVar(&c.redisBin, "redis-server", "redis-server", "cluster: the redis-server binary")
	fs.IntVar(&c.runs, "runs", 1, "repeat the scenario this many times; tables give the median")
	fs.StringVar(&c.svg, "svg", "", "broadcast: write the latency-vs-rate plot to this SVG file; cluster with -batches: the cost-per-message-vs-batch plot")
	fs.StringVar(&c.profileDir, "profile-dir", "", "capture broker CPU (and alloc, with /debug/pprof) profiles of each phase into this directory")
	fs.BoolVar(&c.quiet, "q", false, "no progress line on stderr")
	fs.BoolVar(&c.markdown, "markdown", false, "print the tables as Markdown")
	fs.StringVar(&c.replot, "replot", "", "draw -svg from a saved broadcast or cluster -batches result (the JSON line of an earlier run) instead of running")
	fs.IntVar(&c.batch, "batch", 0, "messages per HTTP publish request: 0 sends rate × -batch-interval per tick; N sends requests of exactly N (1: single POST /v1/publish)")
	fs.IntVar(&c.publishers, "publishers", defaultPublishers, "publish requests in flight at most (and HTTP connections to the broker)")
	raw["cluster-phases"] = fs.String("cluster-phases", "", "cluster: comma-separated phases to run, of "+strings.Join(clusterPhaseNames, ", ")+" (default: all)")
	raw["batches"] = fs.String("batches", "", "cluster: run the cross-node phase once per batch size at -rate, comma-separated (e.g. 1,10,50,100); -svg plots the cost per message")
	fs.BoolVar(&c.redisCluster, "redis-cluster", false, "cluster: start a 3-master Redis Cluster (redis-cli --cluster create) instead of one redis-server")
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.client, "client", "goroutine", "how workers read their sockets: goroutine (one reader goroutine per connection) or epoll (a poller per core; measured slower here)")
	return fs
}

// parseConfig reads the command line and applies the scenario preset.
func parseConfig(args []string, out io.Writer) (config, error) {
	var c config
	raw := map[string]*string{}
	fs := newFlagSet(&c, raw, out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageErr{err.Error()}
	}
	if fs.NArg() > 0 {
		return c, usageErr{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if c.replot != "" {
		if c.svg == "" {
			return c, badFlag("replot", "give -svg, the plot to write")
		}
		return c, nil
	}
	if c.scenario == "" {
		return c, usageErr{"-scenario is required: one of " + strings.Join(scenarios, ", ")}
	}
	p, ok := presets[c.scenario]
	if !ok {
		return c, badFlag("scenario", "%q: want one of %s", c.scenario, strings.Join(scenarios, ", "))
	}
	// A flag left empty takes the preset.
	pick := func(name, def string) string {
		if v := *raw[name]; v != "" {
			return v
		}
		return def
	}
	var err error
	if c.conns, err = parseIntList("conns", pick("conns", p.conns)); err != nil {
		return c, err
	}
	if d := pick("duration", p.duration); d != "" {
		if c.duration, err = time.ParseDuration(d); err != nil || c.duration <= 0 {
			return c, badFlag("duration", "%q: want a positive duration such as 10s", d)
		}
	}
	if c.stepDuration == 0 {
		c.stepDuration = c.duration
	}
	if v := pick("rate", p.rate); v != "" {
		if c.rate, err = parseRate(v); err != nil || c.rate <= 0 {
			return c, badFlag("rate", "%q: want a positive number of messages per second", v)
		}
	}
	if v := pick("rates", p.rates); v != "" {
		if c.rates, err = parseRateList(v); err != nil {
			return c, badFlag("rates", "%v", err)
		}
	}
	if c.topics, err = parseOptInt("topics", pick("topics", p.topics)); err != nil {
		return c, err
	}
	if c.perConn, err = parseOptInt("subs-per-conn", pick("subs-per-conn", p.perConn)); err != nil {
		return c, err
	}
	if c.readBuffer, err = parseOptInt("read-buffer", pick("read-buffer", p.readBuffer)); err != nil {
		return c, err
	}
	c.brokerArgs = strings.Fields(*raw["broker-args"])
	if err := c.parseClusterFlags(raw); err != nil {
		return c, err
	}
	return c, c.validate()
}

// validate checks the values the flag package accepts but the loadgen does not.
func (c config) validate() error {
	for _, n := range c.conns {
		if n > c.maxConns {
			return badFlag("conns", "%d is over -max-connections %d", n, c.maxConns)
		}
	}
	if c.scenario == "churn" {
		peak := c.conns[0] + int(math.Ceil(c.churnRate*c.churnLife.Seconds()))
		if peak > c.maxConns {
			return badFlag("churn-rate", "%d stable plus %g/s living %s is over -max-connections %d", c.conns[0], c.churnRate, c.churnLife, c.maxConns)
		}
		if c.churnRate <= 0 || c.churnLife <= 0 {
			return badFlag("churn-rate", "rate and -churn-life must be positive")
		}
	}
	if c.url != "" {
		u, err := url.Parse(c.url)
		if err != nil || (u.Scheme != "ws") || u.Host == "" {
			return badFlag("url", "%q: want ws://host:port/v1/ws", c.url)
		}
		if !isLoopbackHost(u.Hostname()) {
			return badFlag("url", "%q: the loadgen targets loopback addresses only (127.0.0.0/8, ::1, localhost)", c.url)
		}
		if c.scenario == "cluster" {
			return badFlag("url", "the cluster scenario starts its own nodes and Redis; give -broker-bin instead")
		}
	}
	if c.url != "" && c.brokerBin != "" {
		return badFlag("url", "give -url or -broker-bin, not both")
	}
	switch {
	case c.maxConns <= 0:
		return badFlag("max-connections", "%d: must be positive", c.maxConns)
	case c.timeout <= 0:
		return badFlag("timeout", "%s: must be positive", c.timeout)
	case c.stepDuration <= 0:
		return badFlag("step-duration", "%s: must be positive", c.stepDuration)
	case c.p99Limit <= 0:
		return badFlag("p99-limit", "%s: must be positive", c.p99Limit)
	case c.payload < 32 || c.payload > 60000:
		return badFlag("payload", "%d: between 32 and 60000 bytes", c.payload)
	case c.batchInterval < time.Millisecond:
		return badFlag("batch-interval", "%s: at least 1ms", c.batchInterval)
	case c.readBuffer < 256:
		return badFlag("read-buffer", "%d: at least 256 bytes", c.readBuffer)
	case c.workers < 0:
		return badFlag("workers", "%d: must not be negative", c.workers)
	case c.perIP <= 0 || c.perIP > 25000:
		return badFlag("conns-per-ip", "%d: between 1 and 25000 (one source address has about 28 000 ports)", c.perIP)
	case c.nodes < 0:
		return badFlag("nodes", "%d: must not be negative", c.nodes)
	case c.client != "epoll" && c.client != "goroutine":
		return badFlag("client", "%q: want epoll or goroutine", c.client)
	case c.runs <= 0 || c.runs > 10:
		return badFlag("runs", "%d: between 1 and 10", c.runs)
	}
	if len(c.conns) > 1 && c.scenario != "idle" && c.scenario != "broadcast" {
		return badFlag("conns", "a list of sizes is for idle and broadcast; %s takes one", c.scenario)
	}
	if c.nodes > 1 && c.scenario != "idle" {
		return badFlag("nodes", "only the idle scenario spreads over several independent brokers")
	}
	if c.nodes > 1 && c.url != "" {
		return badFlag("nodes", "-nodes starts brokers; it does not go with -url")
	}
	switch c.scenario {
	case "broadcast":
		if len(c.rates) == 0 {
			return badFlag("rates", "the broadcast scenario needs at least one rate")
		}
	case "fanout-many":
		if err := (subSpec{Kind: "spread", Prefix: "t.", Topics: c.topics, Per: c.perConn}).validate(); err != nil {
			return badFlag("topics", "%v", err)
		}
	case "wildcard":
		if err := (subSpec{Kind: "wildcard", Topics: c.topics}).validate(); err != nil {
			return badFlag("topics", "%v", err)
		}
	}
	if c.svg != "" && c.scenario != "broadcast" && (c.scenario != "cluster" || len(c.batches) == 0) {
		return badFlag("svg", "the plot is of the broadcast scenario, or of the cluster scenario's -batches sweep")
	}
	return c.validateCluster()
}

func isLoopbackHost(h string) bool {
	if h == "localhost" || h == "::1" {
		return true
	}
	return strings.HasPrefix(h, "127.") && strings.Count(h, ".") == 3
}

// parseIntList parses "10000,50000" (k and M suffixes allowed).
func parseIntList(name, s string) ([]int, error) {
	if s == "" {
		return nil, badFlag(name, "empty list")
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := parseRate(strings.TrimSpace(f))
		if err != nil || v < 1 || v != math.Trunc(v) {
			return nil, badFlag(name, "%q: want positive whole numbers, comma-separated", f)
		}
		out = append(out, int(v))
	}
	return out, nil
}

func parseOptInt(name, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	v, err := parseRate(s)
	if err != nil || v < 1 || v != math.Trunc(v) {
		return 0, badFlag(name, "%q: want a positive whole number", s)
	}
	return int(v), nil
}

// parseRate parses a number with an optional k (×1000) or M (×1 000 000)
// suffix.
func parseRate(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v * mult, nil
}

// parseRateList parses an increasing list of positive rates.
func parseRateList(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := parseRate(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if v <= 0 {
			return nil, fmt.Errorf("%q: rates must be positive", f)
		}
		out = append(out, v)
	}
	if !sort.Float64sAreSorted(out) {
		return nil, errors.New("rates must increase")
	}
	return out, nil
}
