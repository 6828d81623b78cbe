package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/protocol"
)

// run keeps the subscription connected until it ends, then records why
// and closes the queue.
func (s *Subscription) run() {
	defer close(s.runDone)
	err := s.loop()
	s.mu.Lock()
	s.err, s.session, s.node = err, "", ""
	s.mu.Unlock()
	close(s.queue)
}

// loop connects and reconnects; it returns why it stopped.
func (s *Subscription) loop() error {
	attempt, refusals := 0, 0
	for {
		c, welcome, err := s.connect()
		if err == nil {
			refusals = 0
			up := time.Now()
			err = s.serve(c, welcome)
			c.close(ws.StatusNormalClosure, "")
			s.mu.Lock()
			s.session, s.node = "", ""
			s.mu.Unlock()
			if time.Since(up) >= stableAfter {
				attempt = 0
			}
		}
		if s.ctx.Err() != nil {
			return context.Cause(s.ctx)
		}
		if !s.readySent {
			return err // the first connection failed: Subscribe says so
		}
		var delay time.Duration
		var ce *CloseError
		var e *Error
		switch {
		case errors.As(err, &ce) && ce.Code >= 4500 && ce.Code <= 4999:
			return ce
		case errors.As(err, &ce) && ce.Code == int(ws.StatusGoingAway):
			delay = rand.N(s.opts.Backoff.GoingAway)
		case errors.As(err, &e) && refused(e):
			if refusals++; refusals >= maxRefusals {
				return e
			}
			fallthrough
		default:
			delay = jitter(s.opts.Backoff.Min, s.opts.Backoff.Max, attempt)
			attempt++
		}
		if e != nil && e.RetryAfter > delay {
			delay = e.RetryAfter
		}
		s.log.Info("tidings: disconnected, reconnecting", "err", err, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return context.Cause(s.ctx)
		case <-t.C:
		}
	}
}

// refused reports whether an upgrade refusal counts towards maxRefusals:
// the broker will not take this request as it is (401, 403, 404, …), as
// opposed to "not now" (408, 429, 5xx).
func refused(e *Error) bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// connect opens a connection and reads its welcome. The connection is
// closed when the subscription's context is done.
func (s *Subscription) connect() (*conn, protocol.Frame, error) {
	token := s.c.cfg.Token
	if f := s.c.cfg.TokenFunc; f != nil {
		t, err := f(s.ctx)
		if err != nil {
			return nil, protocol.Frame{}, &Error{Code: protocol.CodeUnauthorized, Message: "Config.TokenFunc: " + err.Error(), err: err}
		}
		token = t
	}
	u := s.c.wsURL
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	c, err := dial(s.ctx, u, s.c.tlsConfig())
	if err != nil {
		return nil, protocol.Frame{}, err
	}
	stop := context.AfterFunc(s.ctx, func() { c.close(ws.StatusNormalClosure, "") })
	c.stopWatch = stop
	msg, err := c.readMessage(dialTimeout)
	var f protocol.Frame
	if err == nil {
		err = json.Unmarshal(msg, &f)
		if err == nil && f.Type != "welcome" {
			err = fmt.Errorf("the first frame is %.100s, not a welcome", msg)
		}
	}
	if err != nil {
		stop()
		c.close(ws.StatusNormalClosure, "")
		if errors.Is(err, errIdle) {
			err = errors.New("no welcome frame in time")
		}
		var ce *CloseError
		if errors.As(err, &ce) {
			return nil, protocol.Frame{}, ce
		}
		return nil, protocol.Frame{}, &Error{Code: protocol.CodeUnavailable, Message: "connecting: " + err.Error(), err: err}
	}
	return c, f, nil
}

// tlsConfig is the TLS configuration of Config.HTTPClient's transport,
// nil for the default.
func (c *Client) tlsConfig() *tls.Config {
	if t, ok := c.hc.Transport.(*http.Transport); ok {
		return t.TLSClientConfig
	}
	return nil
}

// errHeartbeat ends a connection on which nothing arrived for two
// heartbeats.
var errHeartbeat = errors.New("no frame from the broker for two heartbeats")

// serve runs one connection: it subscribes every pattern, then reads
// and handles frames until the connection ends.
func (s *Subscription) serve(c *conn, w protocol.Frame) error {
	defer c.stopWatch()
	s.mu.Lock()
	s.session, s.node = w.Session, w.Node
	s.mu.Unlock()
	s.log.Debug("tidings: connected", "session", w.Session, "node", w.Node)
	s.refs = make(map[string]string)
	for _, p := range s.pats {
		p.state = idle
	}
	for _, name := range s.order {
		if err := s.subscribe(c, s.pats[name]); err != nil {
			return err
		}
	}
	if err := s.checkReady(); err != nil {
		return err
	}
	beat := time.Duration(w.Heartbeat * float64(time.Second))
	if beat <= 0 {
		beat = idleDefault
	}
	pinged := false
	for {
		msg, err := c.readMessage(beat)
		if errors.Is(err, errIdle) {
			// Silence for a heartbeat: ping; silence for two: dead.
			if pinged {
				c.close(4001, "heartbeat timeout")
				return errHeartbeat
			}
			pinged = true
			if err := c.send(command{Op: "ping"}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		pinged = false
		if err := s.handle(c, msg); err != nil {
			return err
		}
	}
}

// command is a command to the broker.
type command struct {
	Op    string    `json:"op"`
	Topic string    `json:"topic,omitempty"`
	Ref   string    `json:"ref,omitempty"`
	Since *sincePos `json:"since,omitempty"`
}

type sincePos struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// subscribe sends p's subscribe command, with since for an exact topic
// whose position is known.
func (s *Subscription) subscribe(c *conn, p *pattern) error {
	s.nextRef++
	ref := "s" + strconv.FormatUint(s.nextRef, 10)
	cmd := command{Op: "subscribe", Topic: p.name, Ref: ref}
	if !p.wild && p.has {
		cmd.Since = &sincePos{Offset: p.pos.Offset, Epoch: p.pos.Epoch}
	}
	s.refs[ref] = p.name
	p.state = pending
	return c.send(cmd)
}

// checkReady lets Subscribe return once every pattern is active.
func (s *Subscription) checkReady() error {
	if s.readySent {
		return nil
	}
	for _, p := range s.pats {
		if p.state != active {
			return nil
		}
	}
	return s.markReady()
}
