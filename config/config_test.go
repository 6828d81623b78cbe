package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// write puts content in a file of the test's temporary directory.
func write(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tidings.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// norm is a value as the flag prints it: durations in Go's form.
func norm(o Option, v string) string {
	if o.Type == Duration {
		if d, err := time.ParseDuration(v); err == nil {
			return d.String()
		}
	}
	return v
}

// TestExampleLoads: Example is a valid file that sets every option to its
// default and holds the three example namespaces.
func TestExampleLoads(t *testing.T) {
	t.Parallel()
	f, err := Load(write(t, Example()))
	if err != nil {
		t.Fatalf("Example does not load: %v", err)
	}
	if len(f.Settings) != len(Options()) {
		t.Errorf("Example sets %d options, want all %d", len(f.Settings), len(Options()))
	}
	for _, o := range Options() {
		s, ok := f.Setting(o.Name)
		if !ok {
			t.Errorf("Example does not list %s", o.Name)
			continue
		}
		if got := norm(o, s.Value); got != o.Default {
			t.Errorf("Example sets %s to %q, want its default %q", o.Name, got, o.Default)
		}
		if !strings.Contains(Example(), o.Env()) {
			t.Errorf("Example does not name %s", o.Env())
		}
	}
	d := Defaults{HistorySize: 100, HistoryTTL: 5 * time.Minute}
	want := Namespaces{
		{Pattern: "chat.>", HistorySize: 1000, HistoryTTL: 5 * time.Minute, Recovery: true, Presence: true, JoinLeave: true, AnonymousSubscribe: true, ClientPublish: PublishAnyone},
		{Pattern: "prices.>", HistorySize: 10, HistoryTTL: 5 * time.Minute, Recovery: true, AnonymousSubscribe: true, ClientPublish: PublishNone},
		{Pattern: "user.*", HistorySize: 100, HistoryTTL: 5 * time.Minute, Recovery: true, AnonymousSubscribe: false, ClientPublish: PublishAnyone},
	}
	got := f.Namespaces(d)
	for i := range got {
		got[i].Line = 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Example's namespaces:\n got %+v\nwant %+v", got, want)
	}
}

// yamlOf is a value of o's type other than its default, as the file
// writes it, and as the flag takes it.
func yamlOf(o Option) (yaml, flag string) {
	switch o.Type {
	case Int:
		return "7", "7"
	case Float:
		return "2.5", "2.5"
	case Bool:
		if o.Default == "true" {
			return "false", "false"
		}
		return "true", "true"
	case Duration:
		return `"90s"`, "90s"
	case List:
		return "[a.example, 'b.example']", "a.example,b.example"
	}
	if len(o.Enum) > 0 {
		v := o.Enum[len(o.Enum)-1]
		return v, v
	}
	return `"some value"`, "some value"
}

// TestEveryKeyParses: each option, given a value of its type, is a
// setting of the file with the value its flag takes, and its line.
func TestEveryKeyParses(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("# every option\n")
	for _, o := range Options() {
		y, _ := yamlOf(o)
		b.WriteString(o.Name + ": " + y + "\n")
	}
	f, err := Parse("all.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range Options() {
		_, want := yamlOf(o)
		s, ok := f.Setting(o.Name)
		switch {
		case !ok:
			t.Errorf("%s: not read", o.Name)
		case s.Value != want:
			t.Errorf("%s: value %q, want %q", o.Name, s.Value, want)
		case s.Line != i+2:
			t.Errorf("%s: line %d, want %d", o.Name, s.Line, i+2)
		}
		if got, want := f.Where(o.Name), "all.yaml:"+strconv.Itoa(i+2); got != want {
			t.Errorf("%s: Where %q, want %q", o.Name, got, want)
		}
	}
}

// TestEmptyFiles: a file with nothing, comments or null sets nothing.
func TestEmptyFiles(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"", "# nothing\n", "~\n", "---\n", "namespaces: []\n", "namespaces:\n"} {
		f, err := Parse("e.yaml", []byte(content))
		if err != nil || len(f.Settings) != 0 || len(f.Namespaces(Defaults{})) != 0 {
			t.Errorf("%q: %+v, %v; want an empty configuration", content, f, err)
		}
	}
}

// TestErrors: every fault names the file, its line and the key.
func TestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content string
		line          int
		key, msg      string
	}{
		{"unknown key, near one", "history-size: 5\nhistroy-ttl: 5m\n", 2, "histroy-ttl", "unknown key: did you mean history-ttl?"},
		{"unknown key, near none", "addr: ':1'\n\nzzz: 1\n", 3, "zzz", "unknown key"},
		{"namespace key of the flags' form", "namespaces:\n  - pattern: a\n    history-size: 3\n", 3, "namespaces[0].history-size", "did you mean history_size?"},
		{"int as a string", "history-size: \"100\"\n", 1, "history-size", `want a whole number, got "100"`},
		{"int as a float", "queue-size: 1.5\n", 1, "queue-size", "want a whole number, got the number 1.5"},
		{"int as a list", "shards:\n  - 1\n", 2, "shards", "want a whole number, got a list"},
		{"bool as yes", "demo: yes\n", 1, "demo", `want true or false, got "yes"`},
		{"duration as a number", "history-ttl: 300\n", 1, "history-ttl", "want a duration"},
		{"duration that does not parse", "heartbeat: 5 minutes\n", 1, "heartbeat", `got "5 minutes"`},
		{"null value", "addr:\n", 1, "addr", "has no value"},
		{"list as a string", "allowed-origins: https://a.example\n", 1, "allowed-origins", "want a list"},
		{"list item with a comma", "api-keys:\n  - a:b,c:d\n", 2, "api-keys", "may not hold a comma"},
		{"list of mappings", "public-hosts:\n  - a: b\n", 2, "public-hosts", "want a list of strings"},
		{"negative size", "history-size: -1\n", 1, "history-size", "must be more than zero"},
		{"zero duration", "history-ttl: 0s\n", 1, "history-ttl", "must be more than zero"},
		{"negative rate", "op-rate: -1\n", 1, "op-rate", "must not be negative"},
		{"too many shards", "shards: 70000\n", 1, "shards", "at most 65536"},
		{"unknown enum value", "log-level: loud\n", 1, "log-level", "want one of debug, info, warn, error"},
		{"key given twice", "addr: ':1'\nqueue-size: 3\naddr: ':2'\n", 3, "addr", "given twice (first on line 1)"},
		{"not a mapping", "- a\n- b\n", 1, "", "want a mapping of settings"},
		{"YAML syntax", "addr: ':1'\nqueue-size: 2\n demo: true\n", 3, "", "not valid YAML: mapping values are not allowed"},
		{"tab", "addr: ':1'\n\tdemo: true\n", 2, "", "not valid YAML: found character that cannot start any token"},
		{"two documents", "addr: ':1'\n---\naddr: ':2'\n", 2, "", "more than one YAML document"},
		{"merge key", "namespaces:\n  - <<: {pattern: a}\n", 2, "namespaces[0].<<", "merge keys are not supported"},
		{"namespaces not a list", "namespaces:\n  pattern: a\n", 2, "namespaces", "want a list of namespaces"},
		{"namespace not a mapping", "namespaces:\n  - chat.>\n", 2, "namespaces[0]", "want a mapping"},
		{"namespace without pattern", "namespaces:\n  - history_size: 3\n", 2, "namespaces[0].pattern", "missing"},
		{"invalid pattern", "namespaces:\n  - pattern: a\n  - pattern: 'a.>.b'\n", 3, "namespaces[1].pattern", "wildcard '>' must be the last segment"},
		{"empty segment", "namespaces:\n  - pattern: 'a..b'\n", 2, "namespaces[0].pattern", "empty segment"},
		{"pattern as alias", "namespaces:\n  - pattern: *.x\n", 2, "", "not valid YAML"},
		{"shadowed namespace", "namespaces:\n  - pattern: 'chat.>'\n  - pattern: chat.room\n", 3, "namespaces[1].pattern", "never used: namespaces[0] (chat.>, line 2)"},
		{"same pattern twice", "namespaces:\n  - pattern: a.*\n  - pattern: a.*\n", 3, "namespaces[1].pattern", "never used"},
		{"history_size zero", "namespaces:\n  - pattern: a\n    history_size: 0\n", 3, "namespaces[0].history_size", "must be a whole number more than zero"},
		{"history_ttl wrong type", "namespaces:\n  - pattern: a\n    history_ttl: 10\n", 3, "namespaces[0].history_ttl", "want a duration"},
		{"history_ttl negative", "namespaces:\n  - pattern: a\n    history_ttl: -1m\n", 3, "namespaces[0].history_ttl", "must be more than zero"},
		{"recovery not a bool", "namespaces:\n  - pattern: a\n    recovery: off\n", 3, "namespaces[0].recovery", "want true or false"},
		{"presence not a bool", "namespaces:\n  - pattern: a\n    presence: 1\n", 3, "namespaces[0].presence", "want true or false"},
		{"join_leave not a bool", "namespaces:\n  - pattern: a\n    join_leave: 'true'\n", 3, "namespaces[0].join_leave", "want true or false"},
		{"anonymous_subscribe not a bool", "namespaces:\n  - pattern: a\n    anonymous_subscribe: []\n", 3, "namespaces[0].anonymous_subscribe", "want true or false, got a list"},
		{"client_publish unknown", "namespaces:\n  - pattern: a\n    client_publish: all\n", 3, "namespaces[0].client_publish", `"all": want none, authenticated or anyone`},
		{"max_message_size negative", "namespaces:\n  - pattern: a\n    max_message_size: -5\n", 3, "namespaces[0].max_message_size", "must not be negative"},
		{"proxy unknown hook", "namespaces:\n  - pattern: a\n    proxy: [subscribe, connect]\n", 3, "namespaces[0].proxy", `"connect": want hook names among subscribe, publish`},
		{"proxy twice", "namespaces:\n  - pattern: a\n    proxy:\n      - publish\n      - publish\n", 5, "namespaces[0].proxy", "listed twice"},
		{"proxy not a list", "namespaces:\n  - pattern: a\n    proxy: publish\n", 3, "namespaces[0].proxy", "want a list"},
		{"namespace key twice", "namespaces:\n  - pattern: a\n    pattern: b\n", 3, "namespaces[0].pattern", "given twice (first on line 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := write(t, tc.content)
			_, err := Load(path)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Load: %v, want an *Error", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			if e.File != path || e.Line != tc.line || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got file %q line %d key %q msg %q\nwant file %q line %d key %q msg containing %q",
					e.File, e.Line, e.Key, e.Msg, path, tc.line, tc.key, tc.msg)
			}
			prefix := path + ":" + strconv.Itoa(tc.line) + ": "
			if tc.key != "" {
				prefix += tc.key + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("message %q does not start with %q", err.Error(), prefix)
			}
		})
	}
}

// TestLoadUnreadable: a missing file is the os error; a file over
// MaxFileSize is refused.
func TestLoadUnreadable(t *testing.T) {
	t.Parallel()
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	big := write(t, "# "+strings.Repeat("x", MaxFileSize)+"\n")
	if _, err := Load(big); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("large file: %v, want it refused as too large", err)
	}
}

// TestUnknownEnv: every TIDINGS_* variable that sets nothing is named
// with the closest that would.
func TestUnknownEnv(t *testing.T) {
	t.Parallel()
	got := UnknownEnv([]string{
		"PATH=/bin", "TIDINGS_HISTORY_SIZE=5", "TIDINGS_CONFIG=/etc/t.yaml",
		"TIDINGS_HISTROY_SIZE=5", "TIDINGS_HEARTBEET=1s", "TIDINGS_CONFG=x", "TIDINGS_JWTKEY=k",
	})
	want := []EnvWarning{
		{"TIDINGS_CONFG", "TIDINGS_CONFIG"},
		{"TIDINGS_HEARTBEET", "TIDINGS_HEARTBEAT"},
		{"TIDINGS_HISTROY_SIZE", "TIDINGS_HISTORY_SIZE"},
		{"TIDINGS_JWTKEY", "TIDINGS_JWT_KEY"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UnknownEnv:\n got %v\nwant %v", got, want)
	}
}

func TestDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"history", "histroy", 2}, {"abc", "abc", 0}} {
		if got := distance(tc.a, tc.b); got != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// TestOptionCheck: Check holds an option's value, as its flag takes it,
// to its type, Bound, Max and Enum.
func TestOptionCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, value, want string // want: "" for a valid value
	}{
		{"history-size", "1", ""},
		{"history-size", "0", "0: must be more than zero"},
		{"history-size", "ten", `"ten": want a whole number`},
		{"history-ttl", "1ms", ""},
		{"history-ttl", "0s", "0s: must be more than zero"},
		{"history-ttl", "-90s", "-1m30s: must be more than zero"},
		{"publish-rate", "0", ""},
		{"publish-rate", "-0.5", "-0.5: must not be negative (0: no limit)"},
		{"max-conns", "-1", "-1: must not be negative (0: from the open-file limit)"},
		{"shards", "65536", ""},
		{"shards", "65537", "65537: at most 65536"},
		{"ws-readers", "goroutine", ""},
		{"ws-readers", "POLL", ""},
		{"ws-readers", "threads", `"threads": want one of poll, goroutine`},
		{"addr", "anything", ""},
		{"api-keys", "a,b", ""},
		{"demo", "false", ""},
	} {
		o, ok := Lookup(tc.name)
		if !ok {
			t.Fatalf("no option %s", tc.name)
		}
		err := o.Check(tc.value)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %q: %v, want valid", tc.name, tc.value, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s %q: %v, want %q", tc.name, tc.value, err, tc.want)
		}
	}
	for _, o := range Options() {
		if err := o.Check(o.Default); err != nil {
			t.Errorf("%s: the default %q fails Check: %v", o.Name, o.Default, err)
		}
		if u := o.Usage(); (o.Type == List) != strings.HasPrefix(u, "comma-separated ") || !strings.HasSuffix(u, o.Help) {
			t.Errorf("%s: usage %q", o.Name, u)
		}
	}
}

// TestFileHelp: Example names the options a Help names as keys, without
// the dash their flags take, and leaves any other dash alone.
func TestFileHelp(t *testing.T) {
	t.Parallel()
	o, _ := Lookup("redis-username")
	want := "Redis ACL username, for redis, redis-cluster or the master and replicas of redis-sentinel (default: none, or the redis URL's)"
	if got := o.fileHelp(); got != want {
		t.Errorf("fileHelp %q, want %q", got, want)
	}
	if got := (Option{Help: "-1 or -nothing, (-addr)"}).fileHelp(); got != "-1 or -nothing, (addr)" {
		t.Errorf("fileHelp %q", got)
	}
	for _, o := range Options() {
		for _, m := range optionRef.FindAllStringSubmatch(o.fileHelp(), -1) {
			if _, ok := Lookup(m[2]); ok {
				t.Errorf("%s: Example's comment names -%s", o.Name, m[2])
			}
		}
	}
}
