package sse

import telem "github.com/tidings-io/tidings/internal/telemetry"

// scope names the server's instruments: the sessions metrics of every
// transport (httpstream.Telemetry), transport "sse".
var scope = telem.Scope("transport/sse")
