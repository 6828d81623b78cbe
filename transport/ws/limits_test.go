package ws_test

import (
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/tidings-io/tidings/session"
	wsserver "github.com/tidings-io/tidings/transport/ws"
)

// SetLimits applies to the sessions already open: the largest message at
// once, the command rate from the next command.
func TestSetLimitsAppliesToOpenSessions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config{ws: wsserver.Config{MaxMessageSize: 4096, OpLimits: session.OpLimits{OpRate: 1000, OpBurst: 1000}}})
	c := h.dial(t)
	c.expect("welcome")
	for i := range 5 {
		c.send(`{"op":"ping","ref":"` + strings.Repeat("a", i) + `"}`)
		c.expect("pong")
	}
	h.srv.SetLimits(wsserver.Limits{MaxMessageSize: 200, OpRate: 0.001, OpBurst: 2})
	c.send(`{"op":"ping","ref":"1"}`)
	c.expect("pong")
	c.send(`{"op":"ping","ref":"2"}`)
	c.expect("pong")
	c.send(`{"op":"subscribe","topic":"a.b","ref":"3"}`)
	if e := c.expect("error"); e.Code != "rate_limited" || !strings.Contains(e.Message, "at most 0.001 per second") {
		t.Errorf("over the new rate: %s", e)
	}
	// A new session has the new limits too; a message over 200 bytes
	// closes it with 1009.
	d := h.dial(t)
	d.expect("welcome")
	d.send(`{"op":"ping","ref":"` + strings.Repeat("b", 250) + `"}`)
	d.expectClose(ws.StatusMessageTooBig, "")
}
