//go:build race

package broker_test

// raceEnabled is set when the race detector is on: it slows the large
// churn tests tenfold and inflates the heap, so they run smaller.
const raceEnabled = true
