// Package redis is the Redis store: one offset sequence per topic across
// every node, shared history in a stream per topic, and pub/sub relay
// between nodes, on a single Redis, a Redis Cluster (sharded pub/sub) or
// through Redis Sentinel, with authentication and TLS (Auth).
//
// What the store says, in its errors and its log, never names a Redis
// address, username or password; go-redis's own log lines come out, so
// redacted, as records of the store's Logger (see goRedisLogger).
//
// Publish is one script run (one round trip): it assigns the offset, appends
// to history, refreshes TTLs and publishes the envelope. Concurrent
// publishes share round trips, pipelined (Config.MaxCoalesce). A node
// subscribes to a topic's channel while it has local subscribers, tracks
// the last offset it delivered per topic, and repairs gaps from history.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"go.opentelemetry.io/otel/metric"
)

// Errors of the Redis store.
var (
	// ErrConfig: the Redis address or options cannot be used.
	ErrConfig = errors.New("redis: invalid configuration")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("redis: store is closed")
	// ErrNotReady: Redis has not answered the last health check.
	ErrNotReady = errors.New("redis: not reachable")
)

// Defaults of Config: what a zero field means.
const (
	// DefaultPrefix is Config.Prefix's default.
	DefaultPrefix = "tidings:"
	// DefaultTimeout is Config.Timeout's default.
	DefaultTimeout = 2 * time.Second
	// DefaultHistorySize is Config.HistorySize's default, in messages per
	// topic.
	DefaultHistorySize = 100
	// DefaultHistoryTTL is Config.HistoryTTL's default.
	DefaultHistoryTTL = 5 * time.Minute
	// DefaultIdempotencyWindow is Config.IdempotencyWindow's default.
	DefaultIdempotencyWindow = 5 * time.Minute
	// DefaultMetaTTL is Config.MetaTTL's default.
	DefaultMetaTTL = 24 * time.Hour
	// DefaultMaxCoalesce is Config.MaxCoalesce's default, in messages per
	// round trip.
	DefaultMaxCoalesce = 512
)

// Config tunes a Store. A zero field means its default: the Default*
// constant its comment names, or what it says for an empty or nil value.
// None of the bounds can be turned off (but MaxCoalesce, the coalescing of
// publishes); a negative one means its default, like zero.
type Config struct {
	// URL is a redis:// or rediss:// URL: redis://[user:pass@]host:port/db.
	// Exactly one of URL, ClusterAddrs and SentinelMaster is set.
	URL string
	// ClusterAddrs are seed addresses (host:port) of a Redis Cluster.
	ClusterAddrs []string
	// SentinelMaster and SentinelAddrs select Redis Sentinel: the name of
	// the monitored master and the sentinels' host:port addresses. Set
	// instead of URL and ClusterAddrs.
	SentinelMaster string
	SentinelAddrs  []string
	// Auth has the credentials and TLS settings, for every mode: with
	// a URL, explicit ones and the URL's may not both give a username, or
	// a password (ErrConfig). Zero: no authentication, no TLS (but for a
	// rediss:// URL).
	Auth
	// Prefix starts every key and channel. Empty means DefaultPrefix
	// ("tidings:").
	Prefix string
	// Timeout bounds every Redis operation (dial, read, write, waiting
	// for a pooled connection). Zero or negative means DefaultTimeout (2s).
	Timeout time.Duration
	// HistorySize is how many messages per topic history keeps. Zero or
	// negative means DefaultHistorySize (100).
	HistorySize int
	// HistoryTTL is how long a message stays in history. Zero or negative
	// means DefaultHistoryTTL (5 minutes).
	HistoryTTL time.Duration
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered on its topic. Zero or negative means
	// DefaultIdempotencyWindow (5 minutes).
	IdempotencyWindow time.Duration
	// MetaTTL is how long a topic's offset and epoch outlive its last use,
	// never less than HistoryTTL or IdempotencyWindow (nor than a topic's
	// own TTL from HistoryFor). Zero or negative means DefaultMetaTTL
	// (24h).
	MetaTTL time.Duration
	// MaxCoalesce bounds how many messages one Redis round trip carries
	// for concurrent publishes (and their bodies to 1 MiB). A publish
	// that finds no round trip in flight goes at once; those that arrive
	// meanwhile go together, pipelined, as soon as it returns, each in
	// script runs of its own (one failing fails only its publish). A
	// larger publish goes alone. On a cluster publishes coalesce per
	// master, so that a slow or failing master holds back only its own;
	// a publish whose topics live on several masters goes alone, with a
	// pipeline to each at the same time. Zero means DefaultMaxCoalesce
	// (512); negative turns coalescing off: each publish makes its own
	// round trip.
	MaxCoalesce int
	// HistoryFor returns the history size and TTL of a topic, in place of
	// HistorySize and HistoryTTL; a zero or negative result means that
	// field. It is asked at each publish and read, so its answers may
	// change (a reload). Every node must answer alike (the same
	// namespaces). Nil: every topic has HistorySize and HistoryTTL.
	HistoryFor broker.HistoryFor
	// Logger receives relay events. Nil means discard.
	Logger *slog.Logger
	// MeterProvider receives the store's metrics (Redis round trips,
	// reconnects, gap repairs). Nil (the default) turns metrics off.
	MeterProvider metric.MeterProvider
}

// configDefaults is the default of each Config field that has one.
var configDefaults = Config{
	Prefix:            DefaultPrefix,
	Timeout:           DefaultTimeout,
	HistorySize:       DefaultHistorySize,
	HistoryTTL:        DefaultHistoryTTL,
	IdempotencyWindow: DefaultIdempotencyWindow,
	MetaTTL:           DefaultMetaTTL,
	Logger:            defaults.Discard(),
}

// withDefaults returns c with every zero (or negative) field set to its
// default.
func (c Config) withDefaults() Config {
	defaults.Zero(&c.MaxCoalesce, DefaultMaxCoalesce) // negative: off
	c = defaults.Fill(c, configDefaults)
	c.MetaTTL = max(c.MetaTTL, c.HistoryTTL, c.IdempotencyWindow)
	return c
}

// Store is the Redis broker.Store. It also implements broker.Watcher.
type Store struct {
	cfg     Config
	client  goredis.UniversalClient
	cluster *goredis.ClusterClient // nil for a single Redis
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	red     *redactor
	health  atomic.Pointer[error]
	closed  atomic.Bool
	relay   *relay
	tel     telemetry
	co      coalescer // single Redis
	// coByMaster holds a cluster's coalescers, by master address, under
	// coMu.
	coMu       sync.Mutex
	coByMaster map[string]*coalescer
	// wildcardsSeen is set in cluster mode while some node has wildcard
	// subscriptions, so publishes also go to the wildcard channels.
	wildcardsSeen atomic.Bool
	// wildcardsAbsentSince is when a read of the wildcards key
	// (refreshWildcards) first found it absent, in a run of such reads (0:
	// it was present); under wildcardsMu, as a read may run beside
	// watchWildcards' own.
	wildcardsMu          sync.Mutex
	wildcardsAbsentSince time.Time
}

// wildcardsLinger is how long the wildcards key must read as absent, in
// successful reads, before publishes stop going to the wildcard channels.
// The key can vanish while wildcard subscriptions still exist (a flushed
// or failed-over master, or a pause that outlasted its TTL); their nodes
// set it again within one health tick of Redis answering, so a linger of
// several ticks never drops a wildcard delivery in that gap.
const wildcardsLinger = 3 * time.Second

var (
	_ broker.Store   = (*Store)(nil)
	_ broker.Watcher = (*Store)(nil)
)

// New connects to Redis as cfg says. It does not wait for Redis to be up:
// until it answers, Healthy reports an error and operations fail within
// the timeout. It pings Redis once though, within the timeout, and fails
// with an error wrapping ErrAuth or ErrTLS when Redis answers by refusing
// the credentials or the certificates. Close releases everything.
func New(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, log: cfg.Logger, tel: newTelemetry(cfg.MeterProvider, cfg.Logger), red: newRedactor(cfg),
		coByMaster: make(map[string]*coalescer)}
	if err := s.newClient(); err != nil {
		return nil, s.red.err(err)
	}
	logGoRedisTo(s)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.probe(); err != nil {
		stopLoggingGoRedisTo(s)
		s.cancel()
		_ = s.client.Close()
		return nil, err
	}
	notYet := fmt.Errorf("%w: no health check yet", ErrNotReady)
	s.health.Store(&notYet)
	s.relay = newRelay(s)
	s.wg.Add(1)
	go s.watchHealth()
	if s.cluster != nil {
		s.wg.Add(1)
		go s.watchWildcards()
	}
	return s, nil
}

func (s *Store) applyTimeouts(dial, read, write, pool *time.Duration) {
	*dial, *read, *write, *pool = s.cfg.Timeout, s.cfg.Timeout, s.cfg.Timeout, s.cfg.Timeout
}

// Listen sets the Deliverer that receives every relayed message.
func (s *Store) Listen(d broker.Deliverer) { s.relay.listen(d) }

// Healthy returns nil while Redis answers, or the reason it does not.
func (s *Store) Healthy() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return *s.health.Load()
}

// watchHealth pings Redis (every master of a cluster) twice a second and
// records the outcome.
func (s *Store) watchHealth() {
	defer s.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	everUp := false
	for n := 0; ; n++ {
		if n%120 == 119 {
			s.relay.sweepTracks()
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		var err error
		start := time.Now()
		if s.cluster != nil {
			// Every master must answer: a dead one owns topics that can
			// be neither published nor delivered.
			err = s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
				return c.Ping(ctx).Err()
			})
		} else {
			err = s.client.Ping(ctx).Err()
		}
		if err == nil {
			s.tel.observe(ctx, start, s.tel.opPing)
		}
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		refused := s.refused(err)
		switch {
		case refused != nil:
			err = fmt.Errorf("%w: %w", ErrNotReady, refused)
		case err != nil:
			err = fmt.Errorf("%w: %w", ErrNotReady, s.red.err(err))
		}
		if prev := *s.health.Load(); (prev == nil) != (err == nil) {
			switch {
			case refused != nil:
				s.log.Error("redis refuses the credentials or the TLS handshake", "err", err)
			case err != nil:
				s.log.Warn("redis unreachable", "err", err)
			default:
				s.log.Info("redis reachable")
				if everUp {
					s.tel.reconnects.Add(s.ctx, 1, s.tel.connCommands)
				}
			}
		}
		s.health.Store(&err)
		everUp = everUp || err == nil
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Close stops the relay and closes the connections.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	stopLoggingGoRedisTo(s)
	s.cancel()
	s.relay.close()
	s.wg.Wait()
	return s.red.err(s.client.Close())
}

// keys returns the meta, log and channel names of topic.
func (s *Store) keys(topic string) []string {
	tag := s.cfg.Prefix + "{" + topic + "}"
	return []string{tag + ":meta", tag + ":log", tag}
}

// wildcardChannel is the classic channel a cluster also publishes a
// topic's messages on while wildcard subscriptions exist.
func (s *Store) wildcardChannel(topic string) string { return s.cfg.Prefix + "w:" + topic }

// wildcardsKey marks, in cluster mode, that some node has wildcard
// subscriptions; nodes that have them refresh it.
func (s *Store) wildcardsKey() string { return s.cfg.Prefix + "wildcards" }

func newEpoch() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// `>` both become the glob `*`, a superset the broker narrows exactly.
func (s *Store) glob(pattern string) string {
	base := s.cfg.Prefix + "{"
	if s.cluster != nil {
		base = s.cfg.Prefix + "w:"
	}
	var b strings.Builder
	for _, c := range base {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	for _, c := range pattern {
		if c == '>' {
			c = '*'
		}
		b.WriteRune(c)
	}
	if s.cluster == nil {
		b.WriteByte('}')
	}
	return b.String()
}

// wildcardsRead is how often a cluster node reads the wildcards key;
// announceWildcards waits four times as long.
const wildcardsRead = 250 * time.Millisecond

// watchWildcards, in cluster mode, reads the wildcards key every
// wildcardsRead (and keeps it alive while this node has wildcard
// subscriptions), on a loop of its own: the health loop may wait a whole
// Timeout on a master that does not answer, and a publisher must not
// miss a node's new wildcard subscription meanwhile. The key lives on
// one master; a failed read changes nothing.
func (s *Store) watchWildcards() {
	defer s.wg.Done()
	tick := time.NewTicker(wildcardsRead)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		err := s.refreshWildcards(ctx)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Debug("redis: reading the wildcards mark failed", "err", s.red.err(err))
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refreshWildcards, in cluster mode, keeps the wildcards key alive while
// this node has wildcard subscriptions and reads whether any node has.
func (s *Store) refreshWildcards(ctx context.Context) error {
	if s.relay.hasWildcards() {
		if err := s.client.Set(ctx, s.wildcardsKey(), 1, 5*time.Second).Err(); err != nil {
			return err
		}
	}
	n, err := s.client.Exists(ctx, s.wildcardsKey()).Result()
	if err != nil {
		return err
	}
	s.noteWildcards(n > 0, time.Now())
	return nil
}

// noteWildcards records one successful read of the wildcards key: present
// turns the flag on at once; absent turns it off only once the key has
// read absent for wildcardsLinger.
func (s *Store) noteWildcards(present bool, now time.Time) {
	s.wildcardsMu.Lock()
	defer s.wildcardsMu.Unlock()
	switch {
	case present:
		s.wildcardsAbsentSince = time.Time{}
		s.wildcardsSeen.Store(true)
	case s.wildcardsAbsentSince.IsZero():
		s.wildcardsAbsentSince = now
	case now.Sub(s.wildcardsAbsentSince) >= wildcardsLinger:
		s.wildcardsSeen.Store(false)
	}
}

// announceWildcards marks that this node has wildcard subscriptions and
// waits until every node has had time to read the mark (watchWildcards
// reads it four times a second), so no publish after Watch returns skips the
// wildcard channels. The mark is written within Timeout; the wait is
// bounded by ctx alone: were it bounded by Timeout too, a Timeout of a
// second or less would fail the first wildcard watch of a node.
func (s *Store) announceWildcards(ctx context.Context) error {
	setCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err := s.client.Set(setCtx, s.wildcardsKey(), 1, 5*time.Second).Err()
	cancel()
	if err != nil {
		return err
	}
	s.wildcardsSeen.Store(true)
	select {
	case <-time.After(4 * wildcardsRead):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
