package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

// spec is a miniature swagger.json in the shape of Kubernetes' own.
const spec = `{
  "definitions": {
    "io.k8s.api.apps.v1.Deployment": {
      "description": "Deployment enables declarative updates.",
      "type": "object",
      "properties": {
        "apiVersion": {"type": "string", "description": "APIVersion"},
        "kind": {"type": "string"},
        "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"}
      },
      "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    },
    "io.k8s.api.apps.v1.DeploymentSpec": {
      "type": "object",
      "required": ["selector"],
      "properties": {
        "description": {"type": "string", "description": "a field called description"},
        "maxUnavailable": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "selector": {"type": "object", "properties": {"x-kubernetes-field": {"type": "string"}}}
      }
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string", "description": "Quantity"},
    "io.k8s.api.core.v1.Service": {
      "type": "object",
      "properties": {"kind": {"type": "string"}},
      "x-kubernetes-group-version-kind": [{"group": "", "kind": "Service", "version": "v1"}]
    },
    "io.k8s.api.networking.v1.Ingress": {
      "type": "object",
      "properties": {"kind": {"type": "string"}},
      "x-kubernetes-group-version-kind": [{"group": "networking.k8s.io", "kind": "Ingress", "version": "v1"}]
    }
  }
}`

func TestConvert(t *testing.T) {
	files, err := convert([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	// kubeconform's names: kind, the group's first label, the version.
	for _, name := range []string{"_definitions.json", "deployment-apps-v1.json", "service-v1.json", "ingress-networking-v1.json"} {
		if _, ok := files[name]; !ok {
			t.Errorf("no %s among %v", name, keys(files))
		}
	}
	if len(files) != 4 {
		t.Errorf("%d files, want 4: %v", len(files), keys(files))
	}

	var defs struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(files["_definitions.json"], &defs); err != nil {
		t.Fatal(err)
	}
	d := defs.Definitions
	dep := d["io.k8s.api.apps.v1.Deployment"]
	if dep["additionalProperties"] != false {
		t.Error("an object with properties is not closed to others")
	}
	if _, ok := dep["description"]; ok {
		t.Error("descriptions are kept")
	}
	if _, ok := dep["x-kubernetes-group-version-kind"]; ok {
		t.Error("Kubernetes extensions are kept")
	}
	props := d["io.k8s.api.apps.v1.DeploymentSpec"]["properties"].(map[string]any)
	for _, field := range []string{"description", "maxUnavailable", "labels", "selector"} {
		if _, ok := props[field]; !ok {
			t.Errorf("field %q lost", field)
		}
	}
	if _, ok := props["selector"].(map[string]any)["properties"].(map[string]any)["x-kubernetes-field"]; !ok {
		t.Error("a field whose name starts with x-kubernetes- was dropped")
	}
	if labels := props["labels"].(map[string]any); labels["additionalProperties"] == false {
		t.Error("a map lost its value schema")
	}
	oneOf := func(types ...string) any {
		var alts []any
		for _, t := range types {
			alts = append(alts, map[string]any{"type": t})
		}
		return map[string]any{"oneOf": alts}
	}
	if got := d["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]; !reflect.DeepEqual(got, oneOf("string", "integer")) {
		t.Errorf("IntOrString is %v, want a string or an integer", got)
	}
	if got := d["io.k8s.apimachinery.pkg.api.resource.Quantity"]; !reflect.DeepEqual(got, oneOf("string", "number")) {
		t.Errorf("Quantity is %v, want a string or a number", got)
	}

	var kind map[string]any
	if err := json.Unmarshal(files["ingress-networking-v1.json"], &kind); err != nil {
		t.Fatal(err)
	}
	p := kind["properties"].(map[string]any)
	if got := p["apiVersion"].(map[string]any)["enum"]; !reflect.DeepEqual(got, []any{"networking.k8s.io/v1"}) {
		t.Errorf("apiVersion enum %v", got)
	}
	if got := kind["allOf"].([]any)[0].(map[string]any)["$ref"]; got != "_definitions.json#/definitions/io.k8s.api.networking.v1.Ingress" {
		t.Errorf("$ref %v", got)
	}
}

func TestConvertRejectsClashingFileNames(t *testing.T) {
	clash := `{"definitions": {
	  "a": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "x.one.io", "kind": "K", "version": "v1"}]},
	  "b": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "x.two.io", "kind": "K", "version": "v1"}]}
	}}`
	if _, err := convert([]byte(clash)); err == nil {
		t.Error("two groups mapping to k-x-v1.json were accepted")
	}
}

func TestGenerateRefusesUnpinnedVersion(t *testing.T) {
	if err := generate(t.TempDir(), "1.29.0"); err == nil {
		t.Error("an unpinned version was accepted")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
