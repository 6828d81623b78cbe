// Command broker runs a Tidings node: WebSocket sessions at /v1/ws, the
// HTTP publish API, and the operations endpoints. With no flags it runs
// single node on the embedded in-memory store.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tidings-io/tidings/admin"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/control"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/internal/demo"
	"github.com/tidings-io/tidings/session"
	"github.com/tidings-io/tidings/store/memory"
	redisstore "github.com/tidings-io/tidings/store/redis"
	"github.com/tidings-io/tidings/tracing"
	"github.com/tidings-io/tidings/transport/admit"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/httpstream"
	"github.com/tidings-io/tidings/transport/sse"
	"github.com/tidings-io/tidings/transport/stream"
	"github.com/tidings-io/tidings/transport/ws"
	"github.com/tidings-io/tidings/web"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	err := run(context.Background(), os.Args[1:], osEnv{}, os.Stdout)
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr and returns the process exit status: 0,
// 2 for a bad command line or environment, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelp), errors.Is(err, errVersion):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 1
	}
}

// run starts a node and serves until ctx is done or SIGINT or SIGTERM
// arrives, then shuts down gracefully; a second signal exits at once.
// SIGHUP reloads the TLS certificate and the configuration.
func run(ctx context.Context, args []string, env environment, stdout io.Writer) error {
	cfg, err := parseConfig(args, env, stdout)
	if err != nil {
		return err
	}
	log, err := tracing.NewLogger(stdout, cfg.logLevel, cfg.logFormat)
	if err != nil {
		name := "log-level"
		if errors.Is(err, tracing.ErrLogFormat) {
			name = "log-format"
		}
		return cfg.invalid(name, err.Error())
	}
	tracing.RouteOTelErrors(log)
	for _, w := range cfg.envWarnings {
		log.Warn("unknown environment variable: it sets nothing", "name", w.Name, "closest", w.Closest)
	}
	// The WebSocket server adds node itself, in front of each session's
	// attributes.
	sessionLog := log
	log = log.With("node", cfg.nodeID)
	sec, err := cfg.security.build(ctx, cfg, log)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return cfg.invalid("addr", err.Error())
	}
	var pprofLn net.Listener
	if cfg.pprofAddr != "" {
		if pprofLn, err = listenLoopback(cfg.pprofAddr); err != nil {
			_ = ln.Close()
			return cfg.invalid("pprof-addr", err.Error())
		}
		// Closes the listener if run returns before serving it; once
		// served, the server's shutdown has closed it already.
		defer pprofLn.Close()
	}
	raiseOpenFileLimit(log)
	guard := newConnGuard(ln, connCapacity(cfg.maxConns), cfg.httpIPMaxIdle, sec.proxies, log)
	ln = guard
	if sec.tls != nil {
		ln = tls.NewListener(ln, sec.tls.TLSConfig())
		stopTLS := watchTLS(sec.tls)
		defer stopTLS()
	}

	tel, err := tracing.Setup(ctx, env.Getenv, tracing.Config{ServiceVersion: version, InstanceID: cfg.nodeID, Console: stdout})
	if err != nil {
		if errors.Is(err, tracing.ErrEnv) {
			return usageError{err.Error()}
		}
		return err
	}
	defer shutdownTelemetry(tel, log)
	guard.instrument(tel.MeterProvider)

	lc := newLiveConfig(cfg)
	store, storeName, err := openStore(cfg, lc, log, tel)
	if err != nil {
		return err
	}
	b := broker.New(broker.Config{Shards: cfg.shards, QueueSize: cfg.queueSize, QueueBytes: cfg.queueBytes, MaxSubscriptions: cfg.maxSubscriptions,
		OutboundBytes: cfg.outboundBytes, Topics: lc.topicOptions,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator}, store, ws.Encoder{})
	// What every transport gives its sessions.
	svc := session.Services{Rules: lc, HookApplies: lc.hookApplies}
	hk, err := cfg.hookFlags.build(cfg, log, tel)
	if err != nil {
		_ = store.Close()
		return err
	}
	if hk != nil {
		defer hk.Close()
		svc.Hooks = hk
	}
	ctl := ctlnode.New(ctlnode.Config{Broker: b, Backend: store, ID: cfg.nodeID, Version: version,
		Topics: lc.presenceFor, PresenceTTL: cfg.presenceTTL, RevokeFor: cfg.revokeFor, Logger: log})
	if err := ctl.Start(ctx); err != nil {
		_ = store.Close()
		return fmt.Errorf("starting the control plane: %w", err)
	}
	// Presence is on or off per topic (the namespaces, -presence): the
	// node answers for each.
	svc.Registry, svc.Presence = ctl, ctl
	if sec.verifier != nil {
		svc.Tokens = sec.verifier
		sec.verifier.CheckRevocation(ctl.Check)
	}
	ops := session.OpLimits{OpRate: limitOf(cfg.opRate), OpBurst: cfg.opBurst}
	// One door for every transport: the node's bounds hold for the
	// node, whichever way its sessions came.
	door := admit.New(admit.Config{
		Policy: admit.Policy{
			AllowedOrigins: cfg.allowedOrigins, PublicHosts: cfg.publicHosts, TrustedProxies: sec.proxies,
			MaxSessions: limitOf(cfg.maxSessions), IPConnRate: limitOf(cfg.ipConnRate), IPConnBurst: cfg.ipConnBurst, IPMaxConns: limitOf(cfg.ipMaxConns),
		},
		Tokens: svc.Tokens, Hooks: svc.Hooks, MeterProvider: tel.MeterProvider, Logger: log,
	})
	wsrv := ws.New(ws.Config{
		Services:       svc,
		OpLimits:       ops,
		Door:           door,
		NodeID:         cfg.nodeID,
		MaxMessageSize: cfg.maxMessageSize,
		Heartbeat:      cfg.heartbeat,
		WriteTimeout:   cfg.writeTimeout,
		Logger:         sessionLog,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		Propagator:     tel.Propagator,

		GoroutineReaders:   cfg.wsReaders == "goroutine",
		Compression:        cfg.wsCompression,
		CompressionMinSize: cfg.wsCompressionMinSize,
	}, b)
	streamed := httpstream.Settings{NodeID: cfg.nodeID, Heartbeat: cfg.heartbeat, WriteTimeout: cfg.writeTimeout, Logger: sessionLog}
	ssrv := sse.New(sse.Config{Settings: streamed, Services: svc, Door: door.For("sse"), MeterProvider: tel.MeterProvider}, b)
	stsrv := stream.New(stream.Config{Settings: streamed, Services: svc, OpLimits: ops, Door: door.For("http-stream"),
		MaxBodySize: cfg.maxMessageSize, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider}, b)
	api := httpapi.New(httpapi.Config{
		APIKeys:        sec.apiKeys,
		PublishRate:    limitOf(cfg.publishRate),
		TrustedProxies: sec.proxies,
		MaxBodySize:    int64(cfg.maxBodySize),
		Ready:          store.Healthy,
		Metrics:        tel.MetricsHandler,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		Propagator:     tel.Propagator,
		Logger:         log,
		Control:        ctl,
		Tokens:         svc.Tokens,
		Settings:       lc.settings,
		SSE:            ssrv,
		Stream:         stsrv,
	}, b, wsrv)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("/v1/client.js", web.ClientHandler())
	mux.Handle("/admin", admin.Handler())
	mux.Handle("/admin/", admin.Handler())
	stopDemo := func() {}
	if cfg.demo {
		mux.Handle("/demo", web.DemoHandler())
		mux.Handle("/demo/", web.DemoHandler())
		demoCtx, cancelDemo := context.WithCancel(context.Background())
		demoDone := make(chan struct{})
		go func() {
			defer close(demoDone)
			_ = demo.Run(demoCtx, b, demo.DefaultInterval)
		}()
		stopDemo = func() { cancelDemo(); <-demoDone }
	}
	srv := &http.Server{
		Handler: guard.closeOverIdle(mux),
		// A connection must send its whole request head (a WebSocket
		// upgrade included) within the handshake timeout, and its whole
		// request within the read timeout: slow senders cannot hold a
		// connection and its goroutine for long.
		ReadHeaderTimeout: cfg.handshakeTimeout,
		ReadTimeout:       cfg.readTimeout,
		WriteTimeout:      cfg.writeTimeout,
		MaxHeaderBytes:    cfg.maxHeaderBytes,
		// An idle keep-alive connection holds a descriptor, a goroutine
		// and its buffers: it is closed soon, and connGuard bounds how
		// many one address keeps.
		IdleTimeout: cfg.httpIdleTimeout,
		ConnState:   guard.connState,
		ConnContext: guard.connContext,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var psrv *http.Server
	if pprofLn != nil {
		psrv = &http.Server{
			Handler:           pprofHandler(),
			ReadHeaderTimeout: cfg.handshakeTimeout,
			ReadTimeout:       cfg.readTimeout,
			MaxHeaderBytes:    cfg.maxHeaderBytes,
			IdleTimeout:       cfg.httpIdleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			// No write timeout: /debug/pprof/profile and trace answer
			// after the ?seconds= they are asked for, and refuse a
			// duration beyond the server's write timeout.
		}
	}

	// Signals are caught before the listening line is logged: a supervisor
	// (or a test) that signals as soon as it reads that line must get a
	// graceful shutdown, not the default action of SIGTERM.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	rl := &reloader{args: args, env: env, log: log, live: lc, b: b, wsrv: wsrv, api: api, ctl: ctl, cur: cfg}
	reloads := []func(){func() { _ = rl.reload() }}
	if sec.tls != nil {
		reloads = append([]func(){func() {
			log.Info("SIGHUP received, reloading the TLS certificate")
			_ = sec.tls.Reload()
		}}, reloads...)
	}
	stopHUP := watchHUP(reloads...)
	defer stopHUP()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	pprofErr := make(chan error, 1) // never sent to when profiling is off
	if psrv != nil {
		go func() { pprofErr <- psrv.Serve(pprofLn) }()
		// Logged before "listening", so that whoever waits for that line
		// finds this one too.
		log.Info("pprof listening", "addr", pprofLn.Addr().String(), "path", "/debug/pprof/")
	}
	log.Info("listening", "addr", ln.Addr().String(), "version", version, "store", storeName,
		"tls", sec.tls != nil, "auth", authMode(cfg), "traces", tel.Traces, "metrics", tel.Metrics)

	var cause error
	select {
	case <-ctx.Done():
	case s := <-sigs:
		log.Info("signal received, shutting down", "signal", s.String())
	case err := <-serveErr:
		cause = fmt.Errorf("serving: %w", err)
	case err := <-pprofErr:
		cause = fmt.Errorf("serving pprof: %w", err)
	}
	// No reload once shutdown begins.
	stopHUP()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal, exiting now")
			os.Exit(1)
		case <-done:
		}
	}()
	stopDemo()
	if err := shutdown(api, srv, psrv, []transport{{"WebSocket", wsrv}, {"Server-Sent Events", ssrv}, {"HTTP-streaming", stsrv}}, ctl, store, cfg.shutdownTimeout, log); err != nil && cause == nil {
		cause = err
	}
	return cause
}

// listenLoopback listens on addr, which validate has checked names a
// loopback host, and makes sure the address bound is one: "localhost" is
// resolved by the system and could name another address.
func listenLoopback(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.AddrPort().Addr().Unmap().IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("%q is bound to %s, not a loopback address; %s", addr, ln.Addr(), loopbackOnly)
	}
	return ln, nil
}

// pprofHandler serves net/http/pprof under /debug/pprof/ on a mux of its
// own: the handlers are registered here, for the -pprof-addr server only,
// never on the broker's mux. (Importing net/http/pprof also registers them
// on http.DefaultServeMux, which the broker never serves.) pprof.Index
// serves the named profiles: allocs, block, goroutine, heap, mutex,
// threadcreate.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// nodeStore is the store a node runs on, with what the wiring needs.
// The broker is handed the store itself, not a wrapper, so that it sees
// every interface the store implements (broker.Watcher for Redis).
type nodeStore interface {
	broker.Store
	control.Backend
	io.Closer
	// Healthy returns nil while the store can be reached.
	Healthy() error
}

// memoryStore is the in-memory store, which is always reachable.
type memoryStore struct{ *memory.Store }

// Healthy returns nil: the in-memory store is always reachable.
func (memoryStore) Healthy() error { return nil }

// openStore returns the Redis store when -redis, -redis-cluster or
// -redis-sentinel is set,
// else the embedded in-memory store, and the store's name for the logs.
// Each topic's history is lc's (its namespace's, or the flags').
func openStore(cfg config, lc *liveConfig, log *slog.Logger, tel *tracing.Telemetry) (nodeStore, string, error) {
	if cfg.redisURL == "" && len(cfg.redisCluster) == 0 && cfg.sentinelMaster == "" {
		st := memory.New(memory.Config{HistorySize: cfg.historySize, HistoryTTL: cfg.historyTTL, HistoryBytes: cfg.historyBytes,
			IdempotencyWindow: cfg.idemWindow, HistoryFor: lc.historyFor, MeterProvider: tel.MeterProvider})
		return memoryStore{st}, "memory", nil
	}
	name := "redis"
	if len(cfg.redisCluster) > 0 {
		name = "redis-cluster"
	}
	if cfg.sentinelMaster != "" {
		name = "redis-sentinel"
	}
	st, err := redisstore.New(redisstore.Config{
		URL:               cfg.redisURL,
		ClusterAddrs:      cfg.redisCluster,
		SentinelMaster:    cfg.sentinelMaster,
		SentinelAddrs:     cfg.sentinelAddrs,
		Prefix:            cfg.redisPrefix,
		Timeout:           cfg.redisTimeout,
		HistorySize:       cfg.historySize,
		HistoryTTL:        cfg.historyTTL,
		HistoryFor:        lc.historyFor,
		IdempotencyWindow: cfg.idemWindow,
		Auth:              cfg.redisAuth,
		Logger:            log,
		// The store's metrics; its publishes are traced by the broker.
		MeterProvider: tel.MeterProvider,
	})
	if err != nil {
		return nil, "", cfg.invalid(name, err.Error())
	}
	return st, name, nil
}

// shutdownTelemetry flushes the spans and metrics still buffered and stops
// the exporters, bounded so that an unreachable collector cannot hold the
// exit.
func shutdownTelemetry(tel *tracing.Telemetry, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		log.Warn("telemetry shutdown", "err", err)
	}
}

// raiseOpenFileLimit lifts the soft open-file limit to the hard limit so
// one node can hold many connections.
func raiseOpenFileLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= lim.Max {
		return
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("could not raise the open-file limit", "err", err)
	}
}
