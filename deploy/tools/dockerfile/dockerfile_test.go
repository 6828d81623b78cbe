// Package dockerfile checks the repository's Dockerfile and .dockerignore
// without building an image (no image can be pulled where the tests run):
// it parses the Dockerfile with BuildKit's own parser, runs BuildKit's
// parse-time lint rules and the dispatch-time rules this Dockerfile could
// break, and asserts the image it describes: a static, stamped binary on
// distroless, running as a numeric non-root user, port 8080, no shell needed.
package dockerfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// repoRoot is the main module, relative to this package.
var repoRoot = filepath.Join("..", "..", "..")

const (
	builderImage = "golang:1.26"
	runtimeImage = "gcr.io/distroless/static-debian12:nonroot"
	nonRootUser  = "65532:65532"
)

// dockerfile is the parsed Dockerfile.
type dockerfile struct {
	ast      *parser.Node
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	// warnings are the parser's and the lint rules' findings.
	warnings []string
}

func parse(t *testing.T) *dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parsing the Dockerfile: %v", err)
	}
	d := &dockerfile{ast: res.AST}
	for _, w := range res.Warnings {
		d.warnings = append(d.warnings, fmt.Sprintf("line %d: %s", w.Location.Start.Line, w.Short))
	}
	// Every rule, experimental ones included, reported as a warning.
	lint := linter.New(&linter.Config{
		ExperimentalAll: true,
		Warn: func(rule, _, _, msg string, loc []parser.Range) {
			line := 0
			if len(loc) > 0 {
				line = loc[0].Start.Line
			}
			d.warnings = append(d.warnings, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
		},
	})
	d.stages, d.metaArgs, err = instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("parsing the Dockerfile's instructions: %v", err)
	}
	return d
}

// TestDockerfileLint runs BuildKit's parser and parse-time lint rules
// (StageNameCasing, FromAsCasing, MaintainerDeprecated, …) and the
// dispatch-time rules of `docker build --check` that apply to this file,
// implemented here on the parsed instructions.
func TestDockerfileLint(t *testing.T) {
	d := parse(t)
	warnings := append(d.warnings, dispatchRules(d)...)
	for _, w := range warnings {
		t.Error(w)
	}
}

// secretName is the shape of BuildKit's SecretsUsedInArgOrEnv rule: a name
// with a word such as KEY or TOKEN in it.
var secretName = regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credentials?|key|passwd|password|pass|secret|token)(?:_|$)`)

// dispatchRules checks the rules BuildKit runs while converting the
// Dockerfile (which needs image metadata this machine cannot fetch), as far
// as they concern instructions this Dockerfile uses.
func dispatchRules(d *dockerfile) []string {
	var out []string
	warn := func(n *parser.Node, rule, format string, args ...any) {
		out = append(out, fmt.Sprintf("line %d: %s: %s", n.StartLine, rule, fmt.Sprintf(format, args...)))
	}
	entrypoints := 0
	for _, n := range d.ast.Children {
		word := strings.Fields(n.Original)[0]
		if word != strings.ToUpper(word) {
			warn(n, "ConsistentInstructionCasing", "%s is not upper case", word)
		}
		switch n.Value {
		case "from":
			entrypoints = 0
			for _, fl := range n.Flags {
				if p, ok := strings.CutPrefix(fl, "--platform="); ok && !strings.HasPrefix(p, "$") {
					warn(n, "FromPlatformFlagConstDisallowed", "FROM --platform=%s is a constant", p)
				}
			}
		case "entrypoint", "cmd":
			entrypoints++
			if entrypoints > 1 {
				warn(n, "MultipleInstructionsDisallowed", "more than one %s in a stage", word)
			}
			if !n.Attributes["json"] {
				warn(n, "JSONArgsRecommended", "%s is in shell form", word)
			}
		case "workdir":
			if n.Next == nil || !strings.HasPrefix(n.Next.Value, "/") {
				warn(n, "WorkdirRelativePath", "WORKDIR is not absolute")
			}
		case "env", "label":
			if !strings.Contains(n.Original, "=") {
				warn(n, "LegacyKeyValueFormat", "%s key value without =", word)
			}
		case "expose":
			for p := n.Next; p != nil; p = p.Next {
				if p.Value != strings.ToLower(p.Value) {
					warn(n, "ExposeProtoCasing", "%s", p.Value)
				}
				if strings.Contains(p.Value, ":") {
					warn(n, "ExposeInvalidFormat", "%s maps a host port", p.Value)
				}
			}
		}
		if n.Value == "arg" || n.Value == "env" {
			for p := n.Next; p != nil; p = p.Next {
				if name, _, _ := strings.Cut(p.Value, "="); secretName.MatchString(name) {
					warn(n, "SecretsUsedInArgOrEnv", "%s may hold a secret", name)
				}
			}
		}
	}
	return out
}

// TestDockerfileImage asserts the image the Dockerfile describes.
func TestDockerfileImage(t *testing.T) {
	d := parse(t)
	if len(d.stages) != 2 {
		t.Fatalf("%d stages, want 2 (build and runtime)", len(d.stages))
	}
	build, final := d.stages[0], d.stages[1]

	// The build stage: golang:1.26 on the builder's platform,
	// cross-compiling a static, stamped, path-free binary.
	if build.BaseName != builderImage || build.Name != "build" {
		t.Errorf("first stage FROM %s AS %s, want FROM %s AS build", build.BaseName, build.Name, builderImage)
	}
	if build.Platform != "$BUILDPLATFORM" {
		t.Errorf("build stage platform %q, want $BUILDPLATFORM (cross-compile instead of emulating)", build.Platform)
	}
	args := map[string]bool{}
	var goBuild string
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				args[a.Key] = true
			}
		case *instructions.RunCommand:
			if line := strings.Join(c.CmdLine, " "); strings.Contains(line, "go build") {
				goBuild = line
			}
		}
	}
	if goBuild == "" {
		t.Fatal("no RUN go build in the build stage")
	}
	for _, want := range []string{
		"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`,
		"GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-o /out/broker", "./cmd/broker",
	} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("go build lacks %s: %s", want, goBuild)
		}
	}
	for _, a := range []string{"VERSION", "TARGETOS", "TARGETARCH"} {
		if !args[a] {
			t.Errorf("the build stage uses $%s without declaring ARG %s", a, a)
		}
	}

	// The runtime stage: distroless, only the binary copied in, no RUN (it
	// has no shell), a numeric non-root user, port 8080, exec-form entrypoint.
	if final.BaseName != runtimeImage {
		t.Errorf("final stage FROM %s, want %s", final.BaseName, runtimeImage)
	}
	var user string
	var exposed []string
	var entrypoint *instructions.EntrypointCommand
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			if c.From != build.Name || !slices.Equal(c.SourcePaths, []string{"/out/broker"}) || c.DestPath != "/broker" {
				t.Errorf("final stage copies %v from %q to %s; want only /out/broker from the build stage to /broker", c.SourcePaths, c.From, c.DestPath)
			}
		case *instructions.UserCommand:
			user = c.User
		case *instructions.ExposeCommand:
			exposed = append(exposed, c.Ports...)
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.RunCommand:
			t.Errorf("final stage runs %v: distroless has no shell", c.CmdLine)
		case *instructions.AddCommand:
			t.Errorf("final stage ADDs %v", c.SourcePaths)
		case *instructions.CmdCommand:
			t.Errorf("final stage has CMD %v: the broker takes flags from the pod spec or TIDINGS_* variables", c.CmdLine)
		}
	}
	if user != nonRootUser {
		t.Errorf("final USER %q, want %s (distroless nonroot, numeric so Kubernetes can verify runAsNonRoot)", user, nonRootUser)
	}
	if !slices.Equal(exposed, []string{"8080"}) {
		t.Errorf("EXPOSE %v, want 8080", exposed)
	}
	if entrypoint == nil {
		t.Error("no ENTRYPOINT")
	} else if entrypoint.PrependShell || !slices.Equal(entrypoint.CmdLine, []string{"/broker"}) {
		t.Errorf("ENTRYPOINT %q (shell form: %v), want the exec form [\"/broker\"]", entrypoint.CmdLine, entrypoint.PrependShell)
	}
}

// urlSource is a remote ADD source: a URL or a git repository.
var urlSource = regexp.MustCompile(`^(https?|git)://|^git@|\.git(#|$)`)

// downloader is a command that fetches from the network.
var downloader = regexp.MustCompile(`\b(curl|wget)\b`)

// TestDockerfileFetchesNothing: no ADD of a URL or git repository, and no
// curl or wget: what goes into the image comes from the build context and
// the Go module proxy.
func TestDockerfileFetchesNothing(t *testing.T) {
	d := parse(t)
	for _, s := range d.stages {
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.AddCommand:
				for _, src := range c.SourcePaths {
					if urlSource.MatchString(src) {
						t.Errorf("stage %s: ADD %s fetches from the network", s.Name, src)
					}
				}
			case *instructions.RunCommand:
				if line := strings.Join(c.CmdLine, " "); downloader.MatchString(line) {
					t.Errorf("stage %s: RUN downloads: %s", s.Name, line)
				}
			}
		}
	}
}

// TestDockerignoreKeepsBuildInputs: every file `go build ./cmd/broker`
// reads (go.mod, go.sum, the Go files and embedded files of every package
// of the module it depends on) is in the build context, and the things
// that must not be (.git, deploy/) are left out.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		t.Helper()
		ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	inputs := append([]string{"go.mod", "go.sum"}, buildInputs(t)...)
	if len(inputs) < 10 {
		t.Fatalf("only %d build inputs found: %v", len(inputs), inputs)
	}
	for _, rel := range inputs {
		if excluded(rel) {
			t.Errorf(".dockerignore excludes %s, which go build ./cmd/broker reads", rel)
		}
	}
	for _, rel := range []string{".git/HEAD", "deploy/helm/tidings/Chart.yaml", "bin/broker"} {
		if !excluded(rel) {
			t.Errorf(".dockerignore keeps %s in the build context", rel)
		}
	}
}

// buildInputs lists, relative to the repository, the Go and embedded files
// of every package of the main module that cmd/broker is built from.
func buildInputs(t *testing.T) []string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,Module,GoFiles,EmbedFiles,OtherFiles", "./cmd/broker")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var files []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                             string
			Module                          *struct{ Main bool }
			GoFiles, EmbedFiles, OtherFiles []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, name := range slices.Concat(p.GoFiles, p.EmbedFiles, p.OtherFiles) {
			rel, err := filepath.Rel(root, filepath.Join(p.Dir, name))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, rel)
		}
	}
	return files
}
