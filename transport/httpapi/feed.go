package httpapi

import (
	"encoding/json"
	"net/http"
	"time"
)

// The live feed of the nodes' figures, GET /v1/info/stream.
const (
	// FeedInterval is how often the feed sends the nodes' figures.
	FeedInterval = time.Second
	// feedWriteTimeout bounds the write of one event: a client that
	// reads nothing for that long is cut.
	feedWriteTimeout = 10 * time.Second
)

// infoStream serves GET /v1/info/stream: a Server-Sent Events stream
// that sends `event: info` with GET /v1/info's nodes ({"nodes": [...]})
// at once, then every FeedInterval, each flushed. It ends when the
// client goes, when a write fails or stalls, and when the node begins
// to shut down (within FeedInterval).
func (a *API) infoStream(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.admitAdmin(w, r, http.MethodGet); !ok || !a.controlReady(w) {
		return
	}
	rc := http.NewResponseController(w)
	// The stream outlives the server's read timeout: only the writes are
	// bounded, one by one.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(FeedInterval)
	defer tick.Stop()
	for {
		if a.publishes.Closed() {
			return
		}
		if !a.sendInfo(w, r, rc) {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// sendInfo writes one info event; false when the stream must end.
func (a *API) sendInfo(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) bool {
	nodes, err := a.cfg.Control.Nodes(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return false
		}
		a.cfg.Logger.Warn("info feed: reading the nodes failed", "err", err)
		return true // the next tick tries again
	}
	data, err := json.Marshal(map[string]any{"nodes": nodes})
	if err != nil {
		return false
	}
	_ = rc.SetWriteDeadline(time.Now().Add(feedWriteTimeout))
	buf := make([]byte, 0, len(data)+24)
	buf = append(buf, "event: info\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return false
	}
	return rc.Flush() == nil
}
