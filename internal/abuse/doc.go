// Package abuse holds the general proof that hostile clients cannot
// exhaust a node. Its test runs the broker binary, with its default
// limits, as a separate process and attacks it: deep wildcard patterns,
// fan-out through distinct patterns, topic churn, partial frames, idle
// HTTP keep-alive connections, large messages in history, one message
// on each of many topics, and all of them at once. Meanwhile a
// well-behaved client, in a process of its own, keeps publishing and
// receiving. What the node holds is read from the runtime's own
// accounting (heap and goroutine stacks in use after a collection,
// goroutines, open descriptors) through its -pprof-addr endpoints and
// /proc. See docs/ABUSE.md for the budgets and the figures.
//
// The package has no code of its own. `go test ./internal/abuse/ -abuse`
// runs the suite at the size make test runs it; `-abuse.long` runs it with
// larger attacker counts, and `-abuse.broker=PATH` against a broker
// binary built elsewhere.
package abuse
