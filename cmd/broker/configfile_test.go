package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	tdconfig "github.com/tidings-io/tidings/config"
)

// writeConfig writes a config file in the test's temporary directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tidings.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigOptionsAreFlags: package config's options are the broker's
// flags (but -config and -version), with their usage, types and
// defaults, so that the file, Example and Check know every flag and no
// other. A flag whose binding gives a package's Default constant
// (optDef) takes its default from it: the option's Default must print
// the same.
func TestConfigOptionsAreFlags(t *testing.T) {
	t.Parallel()
	var c config
	fs, _ := c.flagSet()
	seen := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if notSettings[f.Name] {
			return
		}
		seen[f.Name] = true
		o, ok := tdconfig.Lookup(f.Name)
		if !ok {
			t.Errorf("-%s is no option of package config", f.Name)
			return
		}
		if o.Default != f.DefValue {
			t.Errorf("-%s: config's default %q, the flag's %q", f.Name, o.Default, f.DefValue)
		}
		if f.Usage != o.Usage() {
			t.Errorf("-%s: usage %q, want config's %q", f.Name, f.Usage, o.Usage())
		}
		var want []tdconfig.Type
		switch f.Value.(flag.Getter).Get().(type) {
		case int, int64:
			want = []tdconfig.Type{tdconfig.Int}
		case float64:
			want = []tdconfig.Type{tdconfig.Float}
		case bool:
			want = []tdconfig.Type{tdconfig.Bool}
		case time.Duration:
			want = []tdconfig.Type{tdconfig.Duration}
		default:
			want = []tdconfig.Type{tdconfig.String, tdconfig.List}
		}
		if !slices.Contains(want, o.Type) {
			t.Errorf("-%s: config's type %v, want one of %v", f.Name, o.Type, want)
		}
		if o.Type == tdconfig.List && !strings.Contains(f.Usage, "comma-separated") {
			t.Errorf("-%s is a list in config, but its flag is not comma-separated", f.Name)
		}
	})
	for _, o := range tdconfig.Options() {
		if !seen[o.Name] {
			t.Errorf("config's option %s is no flag of the broker", o.Name)
		}
	}
}

// TestEnumAnyCase: an option with an Enum takes its value in any case,
// from a flag, the environment or the file alike, and the broker reads
// it as the Enum spells it.
func TestEnumAnyCase(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "log-format: TEXT\n")
	c, err := parseConfig([]string{"-ws-readers", "Goroutine", "-config", path}, envOf(map[string]string{"TIDINGS_LOG_LEVEL": "WARN"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.wsReaders != "goroutine" || c.logLevel != "warn" || c.logFormat != "text" {
		t.Errorf("ws-readers %q, log-level %q, log-format %q; want goroutine, warn, text", c.wsReaders, c.logLevel, c.logFormat)
	}
	if c.settings["ws-readers"] != "goroutine" {
		t.Errorf("ws-readers shown as %q, want goroutine", c.settings["ws-readers"])
	}
}

// TestBoundsFromOptions: every option's Bound and Max in package config
// apply to its flag and variable as to the file, with the same message.
func TestBoundsFromOptions(t *testing.T) {
	t.Parallel()
	for _, o := range tdconfig.Options() {
		var bad string
		switch {
		case o.Type == tdconfig.Int && o.Max > 0:
			bad = strconv.FormatInt(o.Max+1, 10)
		case o.Bound == tdconfig.Positive && o.Type == tdconfig.Duration:
			bad = "0s"
		case o.Bound == tdconfig.Positive:
			bad = "0"
		case o.Bound == tdconfig.NonNegative && o.Type == tdconfig.Duration:
			bad = "-1s"
		case o.Bound == tdconfig.NonNegative:
			bad = "-1"
		default:
			continue
		}
		want := o.Check(bad)
		if want == nil {
			t.Errorf("%s: %s passes Check", o.Name, bad)
			continue
		}
		_, err := parseConfig([]string{"-" + o.Name + "=" + bad}, noEnv, &bytes.Buffer{})
		if err == nil || !strings.HasSuffix(err.Error(), "-"+o.Name+": "+want.Error()) {
			t.Errorf("-%s=%s: error %v, want one ending %q", o.Name, bad, err, want)
		}
		_, err = parseConfig(nil, envOf(map[string]string{o.Env(): bad}), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), o.Env()+": "+want.Error()) {
			t.Errorf("%s=%s: error %v, want one naming the variable and %q", o.Env(), bad, err, want)
		}
	}
}

// fileValue is v, a flag's value as the environment gives it, as the
// config file writes it for option name.
func fileValue(t *testing.T, name, v string) string {
	t.Helper()
	o, ok := tdconfig.Lookup(name)
	if !ok {
		t.Fatalf("no option %s", name)
	}
	switch o.Type {
	case tdconfig.Int, tdconfig.Float, tdconfig.Bool:
		return v
	case tdconfig.List:
		var items []string
		for _, it := range splitList(v) {
			items = append(items, strconv.Quote(it))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return strconv.Quote(v)
}

// TestConfigFilePrecedence: every flag can be set in the file, under its
// name; the environment wins over the file and a flag over both; what
// neither sets keeps its default.
func TestConfigFilePrecedence(t *testing.T) {
	t.Parallel()
	forEachValueCase(t, func(t *testing.T, fc flagCase) {
		path := writeConfig(t, "# "+fc.name+"\n"+fc.name+": "+fileValue(t, fc.name, fc.envValue)+"\n")
		args := append(slices.Clone(fc.with), "-config", path)
		c, err := parseConfig(args, noEnv, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("file %s: %v", fc.name, err)
		}
		if got := fc.get(c); got != fc.wantEnv {
			t.Errorf("from the file %q reads as %q, want %q", fc.envValue, got, fc.wantEnv)
		}
		if got, want := c.sources[fc.name], path+":2"; got != want {
			t.Errorf("source %q, want %q", got, want)
		}
		// The environment wins over the file.
		env := map[string]string{envName(fc.name): fc.flagValue}
		c, err = parseConfig(args, envOf(env), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if got := fc.get(c); got != fc.wantFlag {
			t.Errorf("env %q over the file %q reads as %q, want the env's %q", fc.flagValue, fc.envValue, got, fc.wantFlag)
		}
		// A flag wins over the file (and over the environment).
		env = map[string]string{envName(fc.name): fc.envValue}
		c, err = parseConfig(append(slices.Clone(args), "-"+fc.name+"="+fc.flagValue), envOf(env), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if got := fc.get(c); got != fc.wantFlag {
			t.Errorf("flag %q over the env and the file reads as %q, want the flag's %q", fc.flagValue, got, fc.wantFlag)
		}
		if c.sources[fc.name] != "flag" {
			t.Errorf("source %q, want flag", c.sources[fc.name])
		}
	})
}

// TestConfigFileFromEnv: TIDINGS_CONFIG names the file as -config does;
// the file sets the namespaces, which take what they leave unset from the
// flags, whatever layer set those.
func TestConfigFileFromEnv(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "history-size: 42\npresence: true\nqueue-size: 7\nnamespaces:\n  - pattern: 'chat.>'\n    join_leave: true\n")
	c, err := parseConfig([]string{"-queue-size", "9"}, envOf(map[string]string{"TIDINGS_CONFIG": path, "TIDINGS_HISTORY_SIZE": "43"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.configFile != path || c.historySize != 43 || !c.presence || c.queueSize != 9 {
		t.Errorf("file %q history-size %d presence %v queue-size %d; want the file, 43 (env), true (file), 9 (flag)",
			c.configFile, c.historySize, c.presence, c.queueSize)
	}
	if len(c.namespaces) != 1 || c.namespaces[0].HistorySize != 43 || !c.namespaces[0].Presence || !c.namespaces[0].JoinLeave {
		t.Errorf("namespaces %+v", c.namespaces)
	}
	want := map[string]string{"history-size": "env TIDINGS_HISTORY_SIZE", "presence": path + ":2", "queue-size": "flag"}
	for k, v := range want {
		if c.sources[k] != v {
			t.Errorf("source of %s: %q, want %q", k, c.sources[k], v)
		}
	}
	if _, ok := c.sources["shards"]; ok || c.settings["shards"] != "64" {
		t.Errorf("shards: source %q value %q, want none and the default", c.sources["shards"], c.settings["shards"])
	}
}

// TestConfigFileErrors: a file that cannot be read or holds a fault, or
// a value the broker refuses, exits with status 2 and a line that names
// the file, the line and the key.
func TestConfigFileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"unknown key", "history-size: 5\nhistroy-ttl: 1m\n", []string{":2: histroy-ttl: unknown key: did you mean history-ttl?"}},
		{"wrong type", "demo: true\nqueue-size: lots\n", []string{":2: queue-size: want a whole number"}},
		{"out of range", "history-size: 0\n", []string{":1: history-size: 0: must be more than zero"}},
		{"invalid pattern", "namespaces:\n  - pattern: 'a.>'\n  - pattern: 'b..c'\n", []string{":3: namespaces[1].pattern:", "empty segment"}},
		{"invalid namespace value", "namespaces:\n  - pattern: a\n    client_publish: everyone\n", []string{":3: namespaces[0].client_publish:", "everyone"}},
		{"value the broker refuses", "addr: '127.0.0.1:0'\nredis: 'http://x'\n", []string{"-redis", ":2 (key redis)"}},
		{"origin the broker refuses", "allowed-origins:\n  - ftp://x\n", []string{"-allowed-origins", ":1 (key allowed-origins)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tc.content)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, []string{"-addr", "127.0.0.1:0", "-config", path}, noEnv, &stdout)
			if code := exitCode(err, &stderr); code != 2 {
				t.Fatalf("exit code %d (err %v), want 2", code, err)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, path) {
				t.Errorf("stderr %q: want one line naming %s", line, path)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not say %q", line, w)
				}
			}
		})
	}
	var stderr bytes.Buffer
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	err := run(context.Background(), []string{"-config", missing}, noEnv, &bytes.Buffer{})
	if code := exitCode(err, &stderr); code != 2 || !strings.Contains(stderr.String(), "-config") || !strings.Contains(stderr.String(), missing) {
		t.Errorf("missing file: exit %d, stderr %q; want 2 naming -config and the file", code, stderr.String())
	}
}

// TestUnknownEnvWarned: a TIDINGS_* variable that sets nothing is named
// in the log with the one it most likely meant; the node starts.
func TestUnknownEnvWarned(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"TIDINGS_HISTROY_SIZE": "5", "TIDINGS_DEMO": "false"})
	rec, err := n.log.waitRecord("unknown environment variable: it sets nothing", 5*time.Second, n.done)
	if err != nil {
		t.Fatal(err)
	}
	if rec["name"] != "TIDINGS_HISTROY_SIZE" || rec["closest"] != "TIDINGS_HISTORY_SIZE" || rec["level"] != "WARN" {
		t.Errorf("warning %v", rec)
	}
	for _, l := range n.log.Lines() {
		if strings.Contains(l, "TIDINGS_DEMO") {
			t.Errorf("a known variable is warned of: %s", l)
		}
	}
}
