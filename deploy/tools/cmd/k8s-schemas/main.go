// Command k8s-schemas writes the JSON schemas kubeconform validates
// Kubernetes objects against, for pinned Kubernetes releases, without
// downloading any schema: it reads the OpenAPI v2 document
// (api/openapi-spec/swagger.json) that ships in the k8s.io/kubernetes Go
// module of each release, fetched with `go mod download` and checked against
// the module checksum pinned below, and converts it the way kubeconform's
// own openapi2jsonschema does.
//
//	go run ./cmd/k8s-schemas -out .schemas 1.30.14 1.37.2
//
// For each version it writes <out>/v<version>-strict/: _definitions.json,
// every definition of the spec, and <kind>-<group>-<version>.json for each
// kind (deployment-apps-v1.json, service-v1.json, …), the layout that
// kubeconform's -schema-location template
// '<out>/{{ .NormalizedKubernetesVersion }}{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'
// names. The schemas are strict: an object may carry only the fields its
// type declares, and no field may be null. A version whose directory is
// complete (its stamp matches) is left as it is.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// pinned are the module checksums (go.sum h1: hashes) of the k8s.io/kubernetes
// releases this command accepts. go mod download verifies them against the
// checksum database too; pinning here means a version is a reviewed choice.
var pinned = map[string]string{
	"1.30.14": "h1:MrlKXh9uhLIJpyxOeXhcndzRVSvwiV9iJ8NgH8nqPsg=",
	"1.37.2":  "h1:A2VDEiObzkYqFTKhSsn0ZEb0RlLEXpHWj93gi2HqEwE=",
}

// format changes whenever the conversion does, so that cached schemas
// written by an older conversion are regenerated.
const format = "tidings-k8s-schemas/2"

const stampName = ".stamp"

func main() {
	out := flag.String("out", ".schemas", "directory to write the schemas under")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: k8s-schemas [-out dir] version...\npinned versions: %s\n", strings.Join(pinnedVersions(), " "))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, v := range flag.Args() {
		if err := generate(*out, strings.TrimPrefix(v, "v")); err != nil {
			fmt.Fprintf(os.Stderr, "k8s-schemas: %s: %v\n", v, err)
			os.Exit(1)
		}
	}
}

func pinnedVersions() []string {
	vs := make([]string, 0, len(pinned))
	for v := range pinned {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return vs
}

// generate writes the schemas of one Kubernetes version, unless they are
// already there.
func generate(out, version string) error {
	sum, ok := pinned[version]
	if !ok {
		return fmt.Errorf("not a pinned version (pinned: %s); add its module checksum to pinned", strings.Join(pinnedVersions(), ", "))
	}
	dir := filepath.Join(out, "v"+version+"-strict")
	stamp := format + " k8s.io/kubernetes@v" + version + " " + sum + "\n"
	if b, err := os.ReadFile(filepath.Join(dir, stampName)); err == nil && string(b) == stamp {
		fmt.Printf("k8s-schemas: %s is up to date\n", dir)
		return nil
	}
	spec, err := readSpec(version, sum)
	if err != nil {
		return err
	}
	files, err := convert(spec)
	if err != nil {
		return err
	}
	// Write into a fresh directory and rename it into place, so that an
	// interrupted run leaves no half-written version behind.
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(out, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, stampName), []byte(stamp), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Printf("k8s-schemas: wrote %d schemas to %s\n", len(files)-1, dir)
	return nil
}

// readSpec returns the OpenAPI v2 document of k8s.io/kubernetes@v<version>,
// downloading the module into the module cache when it is not there.
func readSpec(version, sum string) ([]byte, error) {
	mod := "k8s.io/kubernetes@v" + version
	// Run outside any module, so that the download changes no go.mod or go.sum.
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=", "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct {
		Dir, Sum, Error string
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		return nil, fmt.Errorf("go mod download %s: %v: %s", mod, runErr, stderr.String())
	}
	if info.Error != "" || runErr != nil {
		return nil, fmt.Errorf("go mod download %s: %s %v", mod, info.Error, runErr)
	}
	if info.Sum != sum {
		return nil, fmt.Errorf("module checksum %s, want the pinned %s", info.Sum, sum)
	}
	return os.ReadFile(filepath.Join(info.Dir, "api", "openapi-spec", "swagger.json"))
}

// gvk is one entry of a definition's x-kubernetes-group-version-kind.
type gvk struct {
	Group, Version, Kind string
}

// apiVersion is the apiVersion field value: group/version, or version for
// the core group.
func (g gvk) apiVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

// fileName is kubeconform's name for the kind's schema:
// {{ .ResourceKind }}{{ .KindSuffix }}.json, where KindSuffix is the first
// label of the group (none for the core group) and the version.
func (g gvk) fileName() string {
	suffix := "-" + strings.ToLower(g.Version)
	if g.Group != "" {
		suffix = "-" + strings.ToLower(strings.Split(g.Group, ".")[0]) + suffix
	}
	return strings.ToLower(g.Kind) + suffix + ".json"
}

// Definitions whose OpenAPI type is narrower than what the API server
// accepts: a quantity may be written as a number (cpu: 1), and IntOrString is
// typed as a string with a format.
const (
	quantityDef    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	intOrStringFmt = "int-or-string"
)

// convert turns the OpenAPI document into the schema files, by name.
func convert(spec []byte) (map[string][]byte, error) {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("reading swagger.json: %w", err)
	}
	if len(doc.Definitions) == 0 {
		return nil, errors.New("swagger.json has no definitions")
	}
	defs := map[string]any{}
	files := map[string][]byte{}
	owner := map[string]string{} // file name → full group, to catch clashes
	for name, def := range doc.Definitions {
		var kinds []gvk
		if raw, ok := def["x-kubernetes-group-version-kind"]; ok {
			b, _ := json.Marshal(raw)
			if err := json.Unmarshal(b, &kinds); err != nil {
				return nil, fmt.Errorf("%s: x-kubernetes-group-version-kind: %w", name, err)
			}
		}
		if name == quantityDef {
			defs[name] = map[string]any{"oneOf": []any{
				map[string]any{"type": "string"},
				map[string]any{"type": "number"},
			}}
		} else {
			defs[name] = strict(def)
		}
		for _, k := range kinds {
			fn := k.fileName()
			if g, dup := owner[fn]; dup {
				if g == k.Group {
					continue // the same kind listed twice
				}
				return nil, fmt.Errorf("kinds of groups %q and %q both map to %s", g, k.Group, fn)
			}
			owner[fn] = k.Group
			b, err := json.Marshal(kindSchema(name, k))
			if err != nil {
				return nil, err
			}
			files[fn] = b
		}
	}
	b, err := json.Marshal(map[string]any{
		"$schema":     "http://json-schema.org/draft-04/schema#",
		"definitions": defs,
	})
	if err != nil {
		return nil, err
	}
	files["_definitions.json"] = b
	return files, nil
}

// kindSchema is the schema of one kind's file: its definition, with
// apiVersion and kind fixed to the kind's own.
func kindSchema(def string, k gvk) map[string]any {
	return map[string]any{
		"$schema":  "http://json-schema.org/draft-04/schema#",
		"type":     "object",
		"required": []any{"apiVersion", "kind"},
		"properties": map[string]any{
			"apiVersion": map[string]any{"type": "string", "enum": []any{k.apiVersion()}},
			"kind":       map[string]any{"type": "string", "enum": []any{k.Kind}},
		},
		"allOf": []any{map[string]any{"$ref": "_definitions.json#/definitions/" + def}},
	}
}

// strict returns a copy of the schema s with descriptions and Kubernetes
// extensions dropped, int-or-string turned into a oneOf, and every object
// with declared properties closed to other properties.
func strict(s map[string]any) map[string]any {
	if f, _ := s["format"].(string); f == intOrStringFmt {
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "string"},
			map[string]any{"type": "integer"},
		}}
	}
	out := make(map[string]any, len(s))
	for k, v := range s {
		switch {
		case k == "description", strings.HasPrefix(k, "x-kubernetes-"):
			continue
		case k == "properties":
			props := map[string]any{}
			for name, p := range v.(map[string]any) {
				props[name] = walk(p)
			}
			out[k] = props
		default:
			out[k] = walk(v)
		}
	}
	if _, ok := out["properties"]; ok {
		if _, ok := out["additionalProperties"]; !ok {
			out["additionalProperties"] = false
		}
	}
	return out
}

// walk applies strict to every schema inside v.
func walk(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return strict(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = walk(e)
		}
		return out
	default:
		return v
	}
}
