package httpapi

import (
	"fmt"
	"net/http"
	"sort"
)

// metrics writes the node's counters in the Prometheus text format.
func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	st := a.b.Stats()
	cs := a.ws.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge("tidings_sessions", "WebSocket sessions open.", st.Sessions)
	fmt.Fprintf(w, "# HELP tidings_subscriptions Subscriptions held, by kind.\n# TYPE tidings_subscriptions gauge\n")
	fmt.Fprintf(w, "tidings_subscriptions{kind=\"exact\"} %d\ntidings_subscriptions{kind=\"wildcard\"} %d\n", st.ExactSubscriptions, st.WildcardSubscriptions)
	gauge("tidings_topics", "Topics with local exact subscribers.", st.Topics)
	counter("tidings_messages_published_total", "Messages accepted for publishing on this node.", st.Published)
	counter("tidings_messages_delivered_total", "Message frames queued to subscribers on this node.", st.Delivered)
	counter("tidings_slow_consumers_total", "Sessions closed because their outbound queue overflowed.", st.SlowConsumers)
	byCode := func(name, help string, m map[int]uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		codes := make([]int, 0, len(m))
		for c := range m {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			fmt.Fprintf(w, "%s{code=\"%d\"} %d\n", name, c, m[c])
		}
	}
	byCode("tidings_close_sent_total", "Close frames sent, by close code.", cs.CloseSent)
	byCode("tidings_close_received_total", "Sessions ended by the peer, by close code (1005: no code, 1006: dropped).", cs.CloseReceived)
}
