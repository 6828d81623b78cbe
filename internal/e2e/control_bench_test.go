package e2e

import (
	"net/http"
	"testing"
)

// BenchmarkServerAPI measures the latency of server API calls on three
// nodes sharing a Redis (single or a three-master cluster), one call at a
// time over HTTP keep-alive: an action answered once all three nodes
// acknowledged it through Redis (disconnect of a user with no session), a
// presence/stats read, a topics survey of every node, and /v1/info.
func BenchmarkServerAPI(b *testing.B) {
	for _, kind := range []string{"single", "cluster"} {
		b.Run(kind, func(b *testing.B) {
			cfg := backend(b, kind)
			n1 := startControlNode(b, cfg, "n1")
			startControlNode(b, cfg, "n2")
			startControlNode(b, cfg, "n3")
			calls := []struct{ name, method, path, body string }{
				{"disconnect", http.MethodPost, "/v1/disconnect", `{"user":"nobody"}`},
				{"presence_stats", http.MethodGet, "/v1/presence/stats?topic=bench.room", ""},
				{"topics", http.MethodGet, "/v1/topics?limit=10", ""},
				{"info", http.MethodGet, "/v1/info", ""},
			}
			// Every node must be announced before an action waits for it.
			var info struct{ Nodes []struct{ ID string } }
			for len(info.Nodes) < 3 {
				n1.mustCall(b, http.MethodGet, "/v1/info", "", &info)
			}
			for _, c := range calls {
				b.Run(c.name, func(b *testing.B) {
					for b.Loop() {
						if status, body := n1.call(b, c.method, c.path, c.body, nil); status != http.StatusOK {
							b.Fatalf("%s: %d %s", c.path, status, body)
						}
					}
				})
			}
		})
	}
}
