package main

import (
	"flag"
	"log/slog"
	"time"

	"github.com/tidings-io/tidings/hooks"
	"github.com/tidings-io/tidings/tracing"
)

// hookFlags are the command line's backend hooks (docs/HOOKS.md).
type hookFlags struct {
	hookConnect, hookSubscribe, hookPublish, hookRefresh string
	hookTimeout                                          time.Duration
	hookForwardHeaders, hookForwardCookies               string
}

// flags declares the hook flags on fs.
func (h *hookFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&h.hookConnect, "hook-connect", "", "URL of the backend's connect hook: asked before each WebSocket upgrade (docs/HOOKS.md)")
	fs.StringVar(&h.hookSubscribe, "hook-subscribe", "", "URL of the backend's subscribe hook: asked for each client subscribe")
	fs.StringVar(&h.hookPublish, "hook-publish", "", "URL of the backend's publish hook: asked for each client publish, may replace its data")
	fs.StringVar(&h.hookRefresh, "hook-refresh", "", "URL of the backend's refresh hook: asked for each refresh")
	fs.DurationVar(&h.hookTimeout, "hook-timeout", hooks.DefaultTimeout, "bound on each hook call, its retries included; past it the client gets unavailable")
	fs.StringVar(&h.hookForwardHeaders, "hook-forward-headers", "", "comma-separated request headers of the upgrade sent to the hooks (Cookie and Authorization only when listed)")
	fs.StringVar(&h.hookForwardCookies, "hook-forward-cookies", "", "comma-separated cookies of the upgrade sent to the hooks")
}

// build returns the node's hooks, or nil when no hook URL is set.
func (h *hookFlags) build(c config, log *slog.Logger, tel *tracing.Telemetry) (*hooks.Hooks, error) {
	if h.hookConnect == "" && h.hookSubscribe == "" && h.hookPublish == "" && h.hookRefresh == "" {
		return nil, nil
	}
	if h.hookTimeout <= 0 {
		return nil, c.invalid("hook-timeout", h.hookTimeout.String()+": must be a positive duration")
	}
	hk, err := hooks.New(hooks.Config{
		Connect: h.hookConnect, Subscribe: h.hookSubscribe, Publish: h.hookPublish, Refresh: h.hookRefresh,
		Timeout:        h.hookTimeout,
		ForwardHeaders: splitList(h.hookForwardHeaders), ForwardCookies: splitList(h.hookForwardCookies),
		Node:           c.nodeID,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator,
		Logger: log,
	})
	if err != nil {
		return nil, c.invalid("hook-connect", err.Error())
	}
	return hk, nil
}
