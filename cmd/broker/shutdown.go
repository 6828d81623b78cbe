package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	ctlnode "github.com/tidings-io/tidings/control/node"
	"github.com/tidings-io/tidings/transport/httpapi"
)

// errShutdownTimeout is wrapped by the error of a shutdown that reached
// its deadline: what was still open then was cut.
var errShutdownTimeout = errors.New("graceful shutdown timed out")

// shutdown runs the graceful shutdown order: readiness fails, the listener
// stops and in-flight HTTP requests finish, every session is flushed and
// closed with 1001 once the publishes in flight have been delivered, then
// the control plane writes its last presence changes and the store
// closes; all within timeout. The profiling server, psrv (nil
// when -pprof-addr is not set), stops alongside the HTTP server: its
// listener closes at once, a profile being taken may finish. What is
// still open at the deadline is cut.
//
// It returns nil when every step finished in time and without error.
// Otherwise its error names the steps still waiting at the deadline,
// wrapped with errShutdownTimeout, and those that failed (closing the
// store, say).
func shutdown(api *httpapi.API, srv, psrv *http.Server, transports []transport, ctl *ctlnode.Node, store io.Closer, timeout time.Duration, log *slog.Logger) error {
	start := time.Now()
	api.BeginShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The HTTP server is shut down alongside the sessions, not before
	// them: it waits up to five seconds for connections that have not
	// sent a request (preconnects, TCP health checks), which must not
	// hold back the sessions' 1001. The sessions wait only for the
	// publishes already admitted, so that each message acknowledged to a
	// publisher is flushed before the close frame.
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(ctx) }()
	pprofDone := make(chan error, 1)
	if psrv != nil {
		go func() { pprofDone <- psrv.Shutdown(ctx) }()
	} else {
		pprofDone <- nil
	}
	// late lists the steps still waiting at the deadline, errs what
	// failed otherwise.
	var late, errs []error
	check := func(what string, err error) {
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			late = append(late, fmt.Errorf("%s: %w", what, err))
		default:
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	check("HTTP publishes in flight", api.Drain(ctx))
	for i, err := range shutdownTransports(ctx, transports) {
		check(transports[i].name+" sessions", err)
	}
	httpErr := <-httpDone
	if httpErr != nil {
		_ = srv.Close()
	}
	check("HTTP server", httpErr)
	if pprofErr := <-pprofDone; pprofErr != nil {
		_ = psrv.Close()
		check("profiling server", pprofErr)
	}
	// The sessions' presence is removed, and their leaves are sent,
	// before the store closes.
	if ctl != nil {
		ctl.Close()
	}
	check("closing the store", store.Close())
	after := time.Since(start).String()
	for _, err := range errs {
		log.Warn("shutdown step failed", "err", err)
	}
	if len(late) > 0 {
		log.Warn("shutdown deadline reached; remaining connections were cut", "after", after, "waiting", errList(late).Error())
		errs = append([]error{fmt.Errorf("%w after %v: %w", errShutdownTimeout, timeout, errList(late))}, errs...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("shutdown: %w", errList(errs))
	}
	log.Info("shutdown complete", "after", after)
	return nil
}

// errList is several errors as one, on one line: errors.Is and errors.As
// see each of them.
type errList []error

func (l errList) Error() string {
	msgs := make([]string, len(l))
	for i, err := range l {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (l errList) Unwrap() []error { return l }

// transport is one of the node's session transports, for shutdown.
type transport struct {
	name string
	srv  interface{ Shutdown(context.Context) error }
}

// shutdownTransports closes the sessions of every transport at once, each
// with 1001 after what it has queued, and waits for them, or for ctx. It
// returns each transport's error, in order.
func shutdownTransports(ctx context.Context, transports []transport) []error {
	errs := make([]error, len(transports))
	var wg sync.WaitGroup
	for i, t := range transports {
		wg.Go(func() { errs[i] = t.srv.Shutdown(ctx) })
	}
	wg.Wait()
	return errs
}
