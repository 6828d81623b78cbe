package main

import (
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

// build returns the node's hooks, or nil when no hook URL is set.
func (h *hookFlags) build(c config, log *slog.Logger, tel *tracing.Telemetry) (*hooks.Hooks, error) {
	if h.hookConnect == "" && h.hookSubscribe == "" && h.hookPublish == "" && h.hookRefresh == "" {
		return nil, nil
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
