//go:build linux

package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPresets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args  []string
		check func(t *testing.T, c config)
	}{
		{[]string{"-scenario", "idle"}, func(t *testing.T, c config) {
			if !reflect.DeepEqual(c.conns, []int{10000, 50000}) || c.duration != 5*time.Second {
				t.Errorf("idle preset: conns %v duration %s", c.conns, c.duration)
			}
		}},
		{[]string{"-scenario", "broadcast"}, func(t *testing.T, c config) {
			if !reflect.DeepEqual(c.conns, []int{1000, 10000}) || len(c.rates) == 0 || c.rates[len(c.rates)-1] != 2e6 {
				t.Errorf("broadcast preset: conns %v rates %v", c.conns, c.rates)
			}
			if c.stepDuration != c.duration || c.p99Limit != 50*time.Millisecond {
				t.Errorf("step %s, p99 limit %s", c.stepDuration, c.p99Limit)
			}
		}},
		{[]string{"-scenario", "fanout-many"}, func(t *testing.T, c config) {
			if c.conns[0] != 10000 || c.topics != 10000 || c.perConn != 10 || c.rate != 10000 {
				t.Errorf("fanout-many preset: %+v", c)
			}
		}},
		{[]string{"-scenario", "wildcard"}, func(t *testing.T, c config) {
			if c.conns[0] != 5000 || c.topics != 10000 {
				t.Errorf("wildcard preset: %+v", c)
			}
		}},
		{[]string{"-scenario", "churn"}, func(t *testing.T, c config) {
			if c.churnRate != 1000 || c.conns[0] != 1000 {
				t.Errorf("churn preset: %+v", c)
			}
		}},
		{[]string{"-scenario", "cluster", "-rate", "2k"}, func(t *testing.T, c config) {
			if c.rate != 2000 || c.conns[0] != 1000 {
				t.Errorf("cluster: a given flag must win over the preset: %+v", c)
			}
		}},
		{[]string{"-scenario", "broadcast", "-conns", "500", "-rates", "10k,1.5M", "-step-duration", "2s", "-duration", "9s"}, func(t *testing.T, c config) {
			if !reflect.DeepEqual(c.conns, []int{500}) || !reflect.DeepEqual(c.rates, []float64{1e4, 1.5e6}) || c.stepDuration != 2*time.Second || c.duration != 9*time.Second {
				t.Errorf("overrides: conns %v rates %v step %s", c.conns, c.rates, c.stepDuration)
			}
		}},
		{[]string{"-scenario", "idle", "-url", "ws://127.0.0.1:8080/v1/ws", "-broker-args", "-queue-size 64  -heartbeat 5s"}, func(t *testing.T, c config) {
			if c.url == "" || !reflect.DeepEqual(c.brokerArgs, []string{"-queue-size", "64", "-heartbeat", "5s"}) {
				t.Errorf("url %q broker args %q", c.url, c.brokerArgs)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	expectUsageErrors(t, []badFlags{
		{nil, "-scenario is required"},
		{[]string{"-scenario", "storm"}, `invalid value for -scenario: "storm"`},
		{[]string{"-scenario", "idle", "-conns", "100000"}, "over -max-connections 60000"},
		{[]string{"-scenario", "idle", "-conns", "10,abc"}, `invalid value for -conns: "abc"`},
		{[]string{"-scenario", "idle", "-conns", "0"}, "invalid value for -conns"},
		{[]string{"-scenario", "idle", "-conns", "1.5"}, "invalid value for -conns"},
		{[]string{"-scenario", "broadcast", "-rates", "100k,50k"}, "rates must increase"},
		{[]string{"-scenario", "broadcast", "-rates", "10,-5"}, "invalid value for -rates"},
		{[]string{"-scenario", "broadcast", "-rates", "fast"}, "invalid value for -rates"},
		{[]string{"-scenario", "cluster", "-rate", "0"}, "invalid value for -rate"},
		{[]string{"-scenario", "idle", "-duration", "soon"}, "invalid value for -duration"},
		{[]string{"-scenario", "idle", "-duration", "-1s"}, "invalid value for -duration"},
		{[]string{"-scenario", "idle", "-url", "ws://10.0.0.1:8080/v1/ws"}, "loopback addresses only"},
		{[]string{"-scenario", "idle", "-url", "http://127.0.0.1:8080/v1/ws"}, "want ws://host:port/v1/ws"},
		{[]string{"-scenario", "idle", "-url", "ws://127.0.0.1:1/v1/ws", "-broker-bin", "/bin/true"}, "not both"},
		{[]string{"-scenario", "cluster", "-url", "ws://127.0.0.1:1/v1/ws"}, "starts its own nodes"},
		{[]string{"-scenario", "fanout-many", "-topics", "5", "-subs-per-conn", "10"}, "-subs-per-conn between 1 and -topics"},
		{[]string{"-scenario", "wildcard", "-topics", "5"}, "at least 10"},
		{[]string{"-scenario", "idle", "-conns-per-ip", "30000"}, "invalid value for -conns-per-ip"},
		{[]string{"-scenario", "idle", "-runs", "0"}, "invalid value for -runs"},
		{[]string{"-scenario", "idle", "-client", "threads"}, "invalid value for -client"},
		{[]string{"-replot", "result.json"}, "give -svg"},
		{[]string{"-scenario", "churn", "-conns", "100,200"}, "churn takes one"},
		{[]string{"-scenario", "broadcast", "-nodes", "3"}, "only the idle scenario"},
		{[]string{"-scenario", "idle", "-svg", "x.svg"}, "plot is of the broadcast"},
		{[]string{"-scenario", "churn", "-churn-rate", "100000", "-churn-life", "10s"}, "over -max-connections"},
		{[]string{"-scenario", "idle", "-payload", "8"}, "invalid value for -payload"},
		{[]string{"-scenario", "idle", "extra"}, `unexpected argument "extra"`},
		{[]string{"-scenario", "idle", "-bogus"}, "flag provided but not defined: -bogus"},
	})
}

// badFlags is a command line and what its usage error must contain.
type badFlags struct {
	args []string
	want string // in the error
}

// expectUsageErrors runs each command line through parseConfig, in a
// parallel subtest of its own, and wants a usage error containing want.
func expectUsageErrors(t *testing.T, tests []badFlags) {
	t.Helper()
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig(tt.args, io.Discard)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !errors.Is(err, errUsage) {
				t.Errorf("error %v is not a usage error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	_, err := parseConfig([]string{"-h"}, &b)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"-scenario", "-max-connections", "-broker-bin", "-url", "-duration"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("help lacks %s", want)
		}
	}
	if strings.Contains(b.String(), "-worker\n") || strings.Contains(b.String(), "-worker ") {
		t.Errorf("help shows the internal -worker mode")
	}
}

func TestRealMainExitCodes(t *testing.T) {
	t.Parallel()
	var out, errb strings.Builder
	if code := realMain([]string{"-scenario", "nope"}, &out, &errb); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.HasPrefix(errb.String(), "loadgen: invalid value for -scenario") {
		t.Fatalf("stderr %q", errb.String())
	}
	errb.Reset()
	if code := realMain([]string{"-worker"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "internal") {
		t.Fatalf("-worker by hand: code %d, stderr %q", code, errb.String())
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"50": 50, "50k": 50000, "1.2M": 1.2e6, "2K": 2000, "0.5": 0.5} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "NaN", "Inf", "1x"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q): no error", in)
		}
	}
}
