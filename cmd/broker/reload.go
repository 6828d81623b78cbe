package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"syscall"

	"github.com/tidings-io/tidings/broker"
	tdconfig "github.com/tidings-io/tidings/config"
	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/transport/httpapi"
	"github.com/tidings-io/tidings/transport/ws"
)

// reloader rereads the configuration (flags, environment, file) on
// SIGHUP and applies, without dropping a session, what can change live:
// the namespaces and the options marked Reload in package config. A
// change to any other option is named in the log as needing a restart.
type reloader struct {
	args []string
	env  environment
	log  *slog.Logger
	live *liveConfig
	b    *broker.Broker
	wsrv *ws.Server
	api  *httpapi.API
	ctl  *ctlnode.Node

	// mu orders reloads and guards cur, the configuration in effect.
	mu  sync.Mutex
	cur config
}

// reload rereads and applies the configuration; on an error (a fault in
// the file) the node keeps the configuration it has, and the error is
// logged and returned.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := parseConfig(r.args, r.env, io.Discard)
	if err != nil {
		r.log.Error("configuration not reloaded: the node keeps the one it has", "file", r.cur.configFile, "err", err)
		return err
	}
	applied, restart := r.cur.reloadFrom(next)
	r.apply(applied)
	r.log.Info("configuration reloaded", "file", r.cur.configFile, "applied", applied, "namespaces", len(r.cur.namespaces))
	if len(restart) > 0 {
		r.log.Warn("configuration changes that need a restart were not applied", "settings", restart)
	}
	return nil
}

// apply gives the parts of the node that changed (applied, as
// reloadFrom names them) the configuration in effect. What did not change
// is left alone: a limiter that is set again starts full.
func (r *reloader) apply(applied []string) {
	c := r.cur
	r.live.p.Store(newLive(c))
	changed := func(names ...string) bool {
		for _, n := range names {
			if slices.Contains(applied, n) {
				return true
			}
		}
		return false
	}
	if changed("max-subscriptions") {
		r.b.SetMaxSubscriptions(c.maxSubscriptions)
	}
	if changed("max-message-size", "op-rate", "op-burst") {
		r.wsrv.SetLimits(ws.Limits{MaxMessageSize: c.maxMessageSize, OpRate: limitOf(c.opRate), OpBurst: c.opBurst})
	}
	if changed("max-body-size", "publish-rate") {
		r.api.SetLimits(int64(c.maxBodySize), limitOf(c.publishRate))
	}
	if changed("namespaces", "presence", "join-leave") {
		// Presence of the topics whose options changed, and the
		// subscriptions anonymous sessions may no longer hold.
		r.ctl.Reload()
	}
}

// reloadFrom takes from next, a configuration read again, the options
// that reload and the namespaces. It returns the names of those that
// changed (and "namespaces" when they did), and of the options that
// changed but need a restart, which keep their value.
func (c *config) reloadFrom(next config) (applied, restart []string) {
	for _, o := range tdconfig.Options() {
		if c.settings[o.Name] == next.settings[o.Name] {
			continue
		}
		if !o.Reload {
			restart = append(restart, o.Name)
			continue
		}
		applied = append(applied, o.Name)
		c.settings[o.Name] = next.settings[o.Name]
		if src := next.sources[o.Name]; src != "" {
			c.sources[o.Name] = src
		} else {
			delete(c.sources, o.Name)
		}
	}
	if !reflect.DeepEqual(c.namespaces, next.namespaces) {
		applied = append(applied, "namespaces")
	}
	// The field of every option marked Reload in package config.
	nextFields := next.bindings()
	for i, b := range c.bindings() {
		if o, _ := tdconfig.Lookup(b.name); o.Reload {
			reflect.ValueOf(b.field).Elem().Set(reflect.ValueOf(nextFields[i].field).Elem())
		}
	}
	c.file, c.namespaces = next.file, next.namespaces
	return applied, restart
}

// watchHUP runs each of reloads, in order, on every SIGHUP until the
// returned stop is called.
func watchHUP(reloads ...func()) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				for _, reload := range reloads {
					reload()
				}
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}
