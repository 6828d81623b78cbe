//go:build !race

package broker_test

// raceEnabled is set when the race detector is on.
const raceEnabled = false
