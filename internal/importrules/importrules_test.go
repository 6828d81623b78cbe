package importrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// pkg is the part of `go list -json` output the checker reads.
type pkg struct {
	ImportPath string
	Imports    []string // direct imports
	Deps       []string // all transitive dependencies
	Error      *listError
	DepsErrors []*listError
}

type listError struct {
	Err string
}

// rule forbids the packages under any From prefix, except those under an
// Except prefix, to depend (directly or not) on anything under a Forbid
// prefix but what is under an Allow prefix, or, with StdlibOnly, on
// anything outside the standard library. A prefix matches the path itself
// and every path below it ("a/store" matches "a/store/memory", not
// "a/storefront").
type rule struct {
	Name   string
	From   []string
	Except []string
	Forbid []string
	Allow  []string
	// StdlibOnly forbids every dependency outside the standard library.
	StdlibOnly bool
	// MustMatch makes the rule fail when no listed package is under From, so
	// that renaming or removing a package cannot silently disable a rule.
	MustMatch bool
}

const (
	otelSDK       = "go.opentelemetry.io/otel/sdk"
	otelExporters = "go.opentelemetry.io/otel/exporters"
	goRedis       = "github.com/redis/go-redis"
)

// rules returns the import rules, as the package documentation lists
// them, for the module at path mod.
func rules(mod string) []rule {
	return []rule{
		{
			Name:      "broker imports no transport, store, Redis client or OpenTelemetry SDK/exporter",
			From:      []string{mod + "/broker"},
			Forbid:    []string{mod + "/transport", mod + "/store", mod + "/auth", mod + "/limit", goRedis, otelSDK, otelExporters},
			MustMatch: true,
		},
		{
			Name:      "auth and limit import no transport, store or Redis client",
			From:      []string{mod + "/auth", mod + "/limit"},
			Forbid:    []string{mod + "/transport", mod + "/store", goRedis},
			MustMatch: true,
		},
		{
			Name:   "only tracing and cmd/broker import the OpenTelemetry SDK and exporters",
			From:   []string{mod},
			Except: []string{mod + "/tracing", mod + "/cmd/broker"},
			Forbid: []string{otelSDK, otelExporters},
		},
		{
			Name:      "session imports no transport, store, Redis client or OpenTelemetry SDK/exporter",
			From:      []string{mod + "/session"},
			Forbid:    []string{mod + "/transport", mod + "/store", goRedis, otelSDK, otelExporters},
			MustMatch: true,
		},
		{
			// Every package may use it, broker first: it must not bring
			// any of them, or the SDK, along.
			Name:      "internal/telemetry imports the OpenTelemetry API only: no package of the module, no SDK/exporter or Redis client",
			From:      []string{mod + "/internal/telemetry"},
			Forbid:    []string{mod, otelSDK, otelExporters, goRedis},
			MustMatch: true,
		},
		{
			// The stores implement it: it must bring none of the module
			// along but the wire's types.
			Name:      "control (the control plane's store contract) imports no package of the module but protocol",
			From:      []string{mod + "/control"},
			Except:    []string{mod + "/control/node", mod + "/control/controltest"},
			Forbid:    []string{mod, goRedis},
			Allow:     []string{mod + "/protocol"},
			MustMatch: true,
		},
		{
			// The broker, the Go client and the tests share it: it
			// brings nothing along.
			Name:       "protocol (the wire's types) imports the standard library only",
			From:       []string{mod + "/protocol"},
			StdlibOnly: true,
			MustMatch:  true,
		},
		{
			// Applications import the Go client: it must stay light.
			Name:      "client imports no package of the module but protocol and internal/wsframe, and no Redis client or OpenTelemetry",
			From:      []string{mod + "/client"},
			Forbid:    []string{mod, goRedis, "go.opentelemetry.io"},
			Allow:     []string{mod + "/protocol", mod + "/internal/wsframe"},
			MustMatch: true,
		},
		{
			Name:      "internal/wsframe (capped frame reads) imports no package of the module",
			From:      []string{mod + "/internal/wsframe"},
			Forbid:    []string{mod},
			MustMatch: true,
		},
		{
			// The test client speaks the wire as any client does: it
			// knows nothing of the broker's side.
			Name:      "internal/wstest (the test client) imports no package of the module but protocol and internal/wsframe",
			From:      []string{mod + "/internal/wstest"},
			Forbid:    []string{mod},
			Allow:     []string{mod + "/protocol", mod + "/internal/wsframe"},
			MustMatch: true,
		},
		{
			// The console is assets and their handler: it reaches the
			// broker through the server API only.
			Name: "admin (the console) imports no package of the module but internal/assets, and no Redis client or OpenTelemetry SDK/exporter",
			From: []string{mod + "/admin"},
			Forbid: []string{mod + "/broker", mod + "/session", mod + "/transport", mod + "/store", mod + "/control",
				mod + "/auth", mod + "/limit", mod + "/hooks", mod + "/config", mod + "/client", mod + "/tracing",
				mod + "/web", mod + "/cmd", mod + "/internal/telemetry", mod + "/internal/gate", goRedis, otelSDK, otelExporters},
		},
		{
			Name:   "internal/assets (embedded files' serving) imports no package of the module",
			From:   []string{mod + "/internal/assets"},
			Forbid: []string{mod},
		},
		{
			Name:      "control/node imports no transport, store, Redis client or OpenTelemetry SDK/exporter",
			From:      []string{mod + "/control/node"},
			Forbid:    []string{mod + "/transport", mod + "/store", goRedis, otelSDK, otelExporters},
			MustMatch: true,
		},
		{
			// The tidings CLI reads config files with it: it must bring
			// the broker's types, and nothing of the running node.
			Name: "config imports no transport, store, session, control, auth, limit or Redis client",
			From: []string{mod + "/config"},
			Forbid: []string{mod + "/transport", mod + "/store", mod + "/session", mod + "/control", mod + "/auth",
				mod + "/limit", goRedis, otelSDK, otelExporters},
			MustMatch: true,
		},
		{
			Name:      "hooks imports no transport, store, session, Redis client or OpenTelemetry SDK/exporter",
			From:      []string{mod + "/hooks"},
			Forbid:    []string{mod + "/transport", mod + "/store", mod + "/session", goRedis, otelSDK, otelExporters},
			MustMatch: true,
		},
		{
			// Every transport reuses the session core and the door;
			// none copies or imports another transport.
			Name:      "transport/admit imports no transport but clientip",
			From:      []string{mod + "/transport/admit"},
			Forbid:    []string{mod + "/transport/ws", mod + "/transport/sse", mod + "/transport/stream", mod + "/transport/httpapi"},
			MustMatch: true,
		},
		{
			// The plumbing of the streamed transports (SSE, HTTP
			// streaming) is theirs to share: it knows none of them.
			Name: "transport/httpstream imports no other transport",
			From: []string{mod + "/transport/httpstream"},
			Forbid: []string{mod + "/transport/ws", mod + "/transport/sse", mod + "/transport/stream", mod + "/transport/httpapi",
				mod + "/transport/admit", mod + "/transport/clientip"},
			MustMatch: true,
		},
		{
			Name:      "the SSE and HTTP-streaming transports import no other transport but admit, clientip and httpstream",
			From:      []string{mod + "/transport/sse", mod + "/transport/stream"},
			Forbid:    []string{mod + "/transport/ws", mod + "/transport/httpapi"},
			MustMatch: true,
		},
		{
			Name:      "store packages do not import transport packages",
			From:      []string{mod + "/store"},
			Forbid:    []string{mod + "/transport"},
			MustMatch: true,
		},
		{
			Name:      "transport packages do not import store packages",
			From:      []string{mod + "/transport"},
			Forbid:    []string{mod + "/store"},
			MustMatch: true,
		},
	}
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// forbidden reports whether rule r forbids a dependency on d.
func forbidden(r rule, d string) bool {
	if underAny(d, r.Allow) {
		return false
	}
	if r.StdlibOnly && !stdlib(d) {
		return true
	}
	return underAny(d, r.Forbid)
}

// stdlib reports whether path is a package of the standard library: its
// first element has no dot.
func stdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(path, p) {
			return true
		}
	}
	return false
}

// check returns one line per broken rule, per package of module mod that
// could not be loaded, and per MustMatch rule that matched no package. An
// empty result means every rule holds.
func check(mod string, pkgs []pkg, rs []rule) []string {
	byPath := make(map[string]*pkg, len(pkgs))
	for i := range pkgs {
		byPath[pkgs[i].ImportPath] = &pkgs[i]
	}
	var problems []string
	for _, p := range pkgs {
		if !under(p.ImportPath, mod) {
			continue
		}
		// An import that cannot be resolved leaves Deps incomplete, so the
		// rules cannot be trusted for this package.
		if p.Error != nil {
			problems = append(problems, fmt.Sprintf("%s: cannot load: %s", p.ImportPath, p.Error.Err))
		}
		for _, e := range p.DepsErrors {
			problems = append(problems, fmt.Sprintf("%s: cannot load a dependency: %s", p.ImportPath, e.Err))
		}
	}
	for _, r := range rs {
		matched := false
		for _, p := range pkgs {
			if !underAny(p.ImportPath, r.From) || underAny(p.ImportPath, r.Except) {
				continue
			}
			matched = true
			for _, d := range p.Deps {
				if forbidden(r, d) {
					problems = append(problems, fmt.Sprintf("%s imports %s (%s): breaks rule %q",
						p.ImportPath, d, strings.Join(chain(byPath, p.ImportPath, d), " -> "), r.Name))
				}
			}
		}
		if r.MustMatch && !matched {
			problems = append(problems, fmt.Sprintf("rule %q matched no package under %s", r.Name, strings.Join(r.From, ", ")))
		}
	}
	return problems
}

// chain returns a shortest import path from one package to another, following
// direct imports, or just the two ends when the graph does not hold one.
func chain(byPath map[string]*pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for n := to; n != ""; n = prev[n] {
				path = append(path, n)
			}
			slices.Reverse(path)
			return path
		}
		p, ok := byPath[cur]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return []string{from, to}
}

// goList runs the go command in the module and returns its standard output.
func goList(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the import-rule test needs the go command on PATH: %v", err)
	}
	cmd := exec.Command(goCmd, append([]string{"list"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func decodePkgs(t *testing.T, data []byte) []pkg {
	t.Helper()
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs
		}
		if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
}

// TestImportRules checks the real module: every package of the module and
// every package they depend on, as `go list -deps` reports them (non-test
// imports).
func TestImportRules(t *testing.T) {
	t.Parallel()
	// The module this package belongs to (not `go list -m`, which lists
	// every module of a workspace).
	var self struct{ Module struct{ Path, Dir string } }
	if err := json.Unmarshal(goList(t, ".", "-json=Module", "."), &self); err != nil {
		t.Fatalf("decoding go list -json=Module: %v", err)
	}
	mod := self.Module
	if mod.Path == "" || mod.Dir == "" {
		t.Fatalf("go list -json=Module .: no module path or directory: %+v", mod)
	}
	pkgs := decodePkgs(t, goList(t, mod.Dir, "-e", "-deps",
		"-json=ImportPath,Imports,Deps,Error,DepsErrors", mod.Path+"/..."))
	n := 0
	for _, p := range pkgs {
		if under(p.ImportPath, mod.Path) {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("go list found no package of module %s", mod.Path)
	}
	t.Logf("checked %d packages of %s (%d with dependencies)", n, mod.Path, len(pkgs))
	for _, problem := range check(mod.Path, pkgs, rules(mod.Path)) {
		t.Error(problem)
	}
}

// TestCheck feeds made-up dependency graphs to the checker, so that a broken
// rule is known to fail the test.
func TestCheck(t *testing.T) {
	t.Parallel()
	const mod = "example.com/tidings"
	// base is a graph that keeps every rule.
	base := map[string][]string{
		mod + "/broker":               {"context", "github.com/google/uuid", "go.opentelemetry.io/otel/trace", mod + "/internal/telemetry"},
		mod + "/internal/telemetry":   {"go.opentelemetry.io/otel/metric", "go.opentelemetry.io/otel/trace"},
		mod + "/session":              {"go.opentelemetry.io/otel/trace"},
		mod + "/transport/ws":         {mod + "/broker", mod + "/session", "github.com/gobwas/ws"},
		mod + "/transport/httpapi":    {mod + "/broker"},
		mod + "/transport/admit":      {mod + "/session", mod + "/transport/clientip"},
		mod + "/transport/clientip":   {"net/http"},
		mod + "/transport/sse":        {mod + "/session", mod + "/transport/admit", mod + "/transport/httpstream"},
		mod + "/transport/httpstream": {mod + "/session"},
		mod + "/store/memory":         {mod + "/broker"},
		mod + "/store/redis":          {mod + "/broker", goRedis + "/v9"},
		mod + "/store/storetest":      {mod + "/broker", "testing"},
		mod + "/tracing":              {otelSDK + "/trace", otelExporters + "/prometheus"},
		mod + "/cmd/broker": {mod + "/broker", mod + "/transport/ws", mod + "/transport/httpapi",
			mod + "/store/memory", mod + "/store/redis", mod + "/tracing", otelSDK + "/metric"},
		"go.opentelemetry.io/otel/trace": {"go.opentelemetry.io/otel/attribute"},
		mod + "/auth":                    {"github.com/golang-jwt/jwt/v5"},
		mod + "/limit":                   {"golang.org/x/time/rate"},
		mod + "/control":                 {"context", mod + "/protocol"},
		mod + "/protocol":                {"encoding/json"},
		mod + "/internal/wsframe":        {"github.com/gobwas/ws"},
		mod + "/internal/wstest":         {mod + "/protocol", mod + "/internal/wsframe", "github.com/gobwas/ws"},
		mod + "/client":                  {mod + "/protocol", mod + "/internal/wsframe", "github.com/google/uuid"},
		mod + "/control/node":            {mod + "/control"},
		mod + "/hooks":                   {"net/http"},
		mod + "/config":                  {"go.yaml.in/yaml/v3"},
	}
	// with returns base with the given packages' imports replaced.
	with := func(changes map[string][]string) map[string][]string {
		g := make(map[string][]string, len(base)+len(changes))
		for k, v := range base {
			g[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(g, k)
				continue
			}
			g[k] = v
		}
		return g
	}
	tests := []struct {
		name  string
		graph map[string][]string
		errs  map[string]string // package -> load error
		want  []string          // substrings, one per expected problem, in order
	}{
		{name: "clean", graph: base},
		{
			// Whoever imports broker inherits its dependency, and is reported
			// for every rule that it breaks with it.
			name: "broker imports a store directly",
			graph: with(map[string][]string{
				mod + "/broker":       {"context", mod + "/store/memory"},
				mod + "/store/memory": {"sync"},
			}),
			want: []string{
				mod + "/broker imports " + mod + "/store/memory (" + mod + "/broker -> " + mod + "/store/memory): breaks rule \"broker",
				mod + "/transport/httpapi imports " + mod + "/store/memory (" + mod + "/transport/httpapi -> " + mod + "/broker -> " + mod + "/store/memory): breaks rule \"transport",
				mod + "/transport/ws imports " + mod + "/store/memory (" + mod + "/transport/ws -> " + mod + "/broker -> " + mod + "/store/memory): breaks rule \"transport",
			},
		},
		{
			name: "broker uses a clean helper package",
			graph: with(map[string][]string{
				mod + "/broker":            {mod + "/broker/internal/x"},
				mod + "/broker/internal/x": {"net/http"},
				mod + "/store/memory":      {"sync"},
				mod + "/store/redis":       {goRedis + "/v9"},
				mod + "/store/storetest":   {"testing"},
				mod + "/transport/ws":      {"github.com/gobwas/ws"},
			}),
			want: nil,
		},
		{
			name: "broker imports a transport through a helper",
			graph: with(map[string][]string{
				mod + "/broker":            {mod + "/broker/internal/x"},
				mod + "/broker/internal/x": {mod + "/transport/ws"},
				mod + "/store/memory":      {"sync"},
				mod + "/store/redis":       {goRedis + "/v9"},
				mod + "/store/storetest":   {"testing"},
				mod + "/transport/ws":      {"github.com/gobwas/ws"},
			}),
			want: []string{
				mod + "/broker imports " + mod + "/transport/ws (" + mod + "/broker -> " + mod + "/broker/internal/x -> " + mod + "/transport/ws)",
				mod + "/broker/internal/x imports " + mod + "/transport/ws (" + mod + "/broker/internal/x -> " + mod + "/transport/ws)",
			},
		},
		{
			name:  "broker imports go-redis",
			graph: with(map[string][]string{mod + "/broker": {goRedis + "/v9"}}),
			want:  []string{mod + "/broker imports " + goRedis + "/v9"},
		},
		{
			name: "broker imports the OpenTelemetry SDK",
			graph: with(map[string][]string{
				mod + "/broker":       {otelSDK + "/trace"},
				mod + "/store/memory": {"sync"}, mod + "/store/redis": {"sync"}, mod + "/store/storetest": {"sync"},
				mod + "/transport/ws": {"sync"}, mod + "/transport/httpapi": {"sync"},
			}),
			want: []string{
				mod + "/broker imports " + otelSDK + "/trace (" + mod + "/broker -> " + otelSDK + "/trace): breaks rule \"broker",
				mod + "/broker imports " + otelSDK + "/trace (" + mod + "/broker -> " + otelSDK + "/trace): breaks rule \"only tracing",
			},
		},
		{
			name: "broker imports an OpenTelemetry exporter",
			graph: with(map[string][]string{
				mod + "/broker":       {otelExporters + "/otlp/otlptrace"},
				mod + "/store/memory": {"sync"}, mod + "/store/redis": {"sync"}, mod + "/store/storetest": {"sync"},
				mod + "/transport/ws": {"sync"}, mod + "/transport/httpapi": {mod + "/broker"},
			}),
			want: []string{
				mod + "/broker imports " + otelExporters + "/otlp/otlptrace (" + mod + "/broker -> " + otelExporters + "/otlp/otlptrace): breaks rule \"broker",
				mod + "/broker imports " + otelExporters + "/otlp/otlptrace (" + mod + "/broker -> " + otelExporters + "/otlp/otlptrace): breaks rule \"only tracing",
				mod + "/transport/httpapi imports " + otelExporters + "/otlp/otlptrace (" + mod + "/transport/httpapi -> " + mod + "/broker -> " + otelExporters + "/otlp/otlptrace): breaks rule \"only tracing",
			},
		},
		{
			name:  "the SSE transport imports the WebSocket one",
			graph: with(map[string][]string{mod + "/transport/sse": {mod + "/session", mod + "/transport/ws"}}),
			want:  []string{mod + "/transport/sse imports " + mod + "/transport/ws"},
		},
		{
			name:  "the streams' plumbing imports a transport of its own",
			graph: with(map[string][]string{mod + "/transport/httpstream": {mod + "/session", mod + "/transport/stream"}}),
			want:  []string{mod + "/transport/httpstream imports " + mod + "/transport/stream"},
		},
		{
			name:  "transport imports the OpenTelemetry SDK",
			graph: with(map[string][]string{mod + "/transport/ws": {mod + "/broker", otelSDK + "/metric"}}),
			want:  []string{mod + "/transport/ws imports " + otelSDK + "/metric"},
		},
		{
			// The rule is on all dependencies, not only direct imports: the SDK
			// reaches no package but tracing and cmd/broker, even through tracing.
			name:  "transport imports tracing, which imports the SDK",
			graph: with(map[string][]string{mod + "/transport/httpapi": {mod + "/broker", mod + "/tracing"}}),
			want: []string{
				mod + "/transport/httpapi imports " + otelExporters + "/prometheus (" + mod + "/transport/httpapi -> " + mod + "/tracing -> " + otelExporters + "/prometheus)",
				mod + "/transport/httpapi imports " + otelSDK + "/trace (" + mod + "/transport/httpapi -> " + mod + "/tracing -> " + otelSDK + "/trace)",
			},
		},
		{
			name:  "another command imports an exporter",
			graph: with(map[string][]string{mod + "/cmd/loadgen": {otelExporters + "/prometheus"}}),
			want:  []string{mod + "/cmd/loadgen imports " + otelExporters + "/prometheus"},
		},
		{
			// broker, which imports it, is left out so that only the
			// telemetry package's own problems are reported.
			name:  "telemetry imports the OpenTelemetry SDK",
			graph: with(map[string][]string{mod + "/broker": {"context"}, mod + "/internal/telemetry": {otelSDK + "/metric"}}),
			want: []string{
				mod + "/internal/telemetry imports " + otelSDK + "/metric (" + mod + "/internal/telemetry -> " + otelSDK + "/metric): breaks rule \"only tracing",
				mod + "/internal/telemetry imports " + otelSDK + "/metric (" + mod + "/internal/telemetry -> " + otelSDK + "/metric): breaks rule \"internal/telemetry",
			},
		},
		{
			name:  "telemetry imports a package of the module",
			graph: with(map[string][]string{mod + "/broker": {"context"}, mod + "/internal/telemetry": {mod + "/auth"}}),
			want: []string{
				mod + "/internal/telemetry imports " + mod + "/auth (" + mod + "/internal/telemetry -> " + mod + "/auth): breaks rule \"internal/telemetry",
			},
		},
		{
			name:  "no telemetry package",
			graph: with(map[string][]string{mod + "/internal/telemetry": nil, mod + "/broker": {"context"}}),
			want:  []string{`rule "internal/telemetry imports the OpenTelemetry API only`},
		},
		{
			name:  "config imports a store",
			graph: with(map[string][]string{mod + "/config": {mod + "/store/redis"}}),
			want: []string{
				mod + "/config imports " + mod + "/store/redis (" + mod + "/config -> " + mod + "/store/redis): breaks rule \"config",
				mod + "/config imports " + goRedis + "/v9 (" + mod + "/config -> " + mod + "/store/redis -> " + goRedis + "/v9): breaks rule \"config",
			},
		},
		{
			name:  "store imports a transport",
			graph: with(map[string][]string{mod + "/store/redis": {mod + "/broker", mod + "/transport/ws"}}),
			want:  []string{mod + "/store/redis imports " + mod + "/transport/ws"},
		},
		{
			name:  "transport imports a store",
			graph: with(map[string][]string{mod + "/transport/httpapi": {mod + "/broker", mod + "/store/memory"}}),
			want:  []string{mod + "/transport/httpapi imports " + mod + "/store/memory"},
		},
		{
			name: "prefixes match whole path segments",
			graph: with(map[string][]string{
				mod + "/broker":        {mod + "/storefront", mod + "/transports", goRedis + "x", otelSDK + "x", "go.opentelemetry.io/otel/metric"},
				mod + "/storefront":    {"fmt"},
				mod + "/transports":    {"fmt"},
				mod + "/store/memory":  {mod + "/broker", mod + "/transportable"},
				mod + "/transportable": {"fmt"},
			}),
		},
		{
			name:  "broker imports auth",
			graph: with(map[string][]string{mod + "/broker": {"context", mod + "/auth"}}),
			want:  []string{mod + "/broker imports " + mod + "/auth (" + mod + "/broker -> " + mod + "/auth): breaks rule \"broker"},
		},
		{
			name:  "auth imports a transport",
			graph: with(map[string][]string{mod + "/auth": {mod + "/transport/clientip"}, mod + "/transport/clientip": {"net/http"}}),
			want:  []string{mod + "/auth imports " + mod + "/transport/clientip"},
		},
		{
			name:  "limit imports a store",
			graph: with(map[string][]string{mod + "/limit": {mod + "/store/memory"}}),
			want:  []string{mod + "/limit imports " + mod + "/store/memory"},
		},
		{
			name:  "broker is gone",
			graph: with(map[string][]string{mod + "/broker": nil}),
			want:  []string{`rule "broker imports no transport`},
		},
		{
			name:  "no store package",
			graph: with(map[string][]string{mod + "/store/memory": nil, mod + "/store/redis": nil, mod + "/store/storetest": nil}),
			want:  []string{`rule "store packages do not import transport packages" matched no package`},
		},
		{
			name:  "protocol imports a package outside the standard library",
			graph: with(map[string][]string{mod + "/protocol": {"encoding/json", "github.com/google/uuid"}}),
			want: []string{
				mod + "/protocol imports github.com/google/uuid (" + mod + "/protocol -> github.com/google/uuid): breaks rule \"protocol",
			},
		},
		{
			name:  "client imports the broker",
			graph: with(map[string][]string{mod + "/client": {mod + "/protocol", mod + "/broker"}}),
			want: []string{
				mod + "/client imports " + mod + "/broker (" + mod + "/client -> " + mod + "/broker): breaks rule \"client",
				mod + "/client imports " + mod + "/internal/telemetry (" + mod + "/client -> " + mod + "/broker -> " + mod + "/internal/telemetry): breaks rule \"client",
				mod + "/client imports go.opentelemetry.io/otel/attribute (",
				mod + "/client imports go.opentelemetry.io/otel/metric (",
				mod + "/client imports go.opentelemetry.io/otel/trace (",
			},
		},
		{
			name:  "the test client imports the broker",
			graph: with(map[string][]string{mod + "/internal/wstest": {mod + "/protocol", mod + "/broker"}}),
			want: []string{
				mod + "/internal/wstest imports " + mod + "/broker (" + mod + "/internal/wstest -> " + mod + "/broker): breaks rule \"internal/wstest",
				mod + "/internal/wstest imports " + mod + "/internal/telemetry (",
			},
		},
		{
			name:  "control imports a package of the module other than protocol",
			graph: with(map[string][]string{mod + "/control": {mod + "/protocol", mod + "/auth"}}),
			want: []string{
				mod + "/control imports " + mod + "/auth (" + mod + "/control -> " + mod + "/auth): breaks rule \"control",
			},
		},
		{
			name:  "load error",
			graph: base,
			errs:  map[string]string{mod + "/transport/ws": `no required module provides package github.com/x/y`},
			want:  []string{mod + "/transport/ws: cannot load: no required module"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := check(mod, fakeList(tt.graph, tt.errs), rules(mod))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// fakeList turns a graph of direct imports into what `go list -deps -json`
// would report: every package, each with its transitive Deps, sorted.
func fakeList(graph map[string][]string, errs map[string]string) []pkg {
	var paths []string
	for p := range graph {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var pkgs []pkg
	for _, p := range paths {
		seen := map[string]bool{}
		var walk func(string)
		walk = func(n string) {
			for _, d := range graph[n] {
				if !seen[d] {
					seen[d] = true
					walk(d)
				}
			}
		}
		walk(p)
		deps := make([]string, 0, len(seen))
		for d := range seen {
			deps = append(deps, d)
		}
		slices.Sort(deps)
		fp := pkg{ImportPath: p, Imports: graph[p], Deps: deps}
		if e, ok := errs[p]; ok {
			fp.Error = &listError{Err: e}
		}
		pkgs = append(pkgs, fp)
	}
	return pkgs
}
