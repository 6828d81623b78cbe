package stream

import telem "github.com/tidings-io/tidings/internal/telemetry"

// scope names the server's spans and instruments: the sessions metrics of
// every transport (httpstream.Telemetry), transport "http-stream".
var scope = telem.Scope("transport/stream")
