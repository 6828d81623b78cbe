package main

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const manifests = `
# Source: tidings/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: rel-tidings
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rel-tidings
spec:
  groups:
    - name: rel-tidings
      rules:
        - alert: TidingsDown
          expr: "up{job=\"rel-tidings\"} == 0"
          for: 5m
          labels:
            severity: critical
          annotations:
            summary: "Tidings pod {{ $labels.pod }} cannot be scraped"
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: other
spec:
  groups:
    - name: other
      interval: 1m
      rules:
        - record: job:up:sum
          expr: sum by (job) (up)
`

func TestExtractKeepsEveryGroup(t *testing.T) {
	out, err := extract(strings.NewReader(manifests))
	if err != nil {
		t.Fatal(err)
	}
	var file ruleFile
	if err := yaml.UnmarshalStrict(out, &file); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if len(file.Groups) != 2 || file.Groups[0]["name"] != "rel-tidings" || file.Groups[1]["interval"] != "1m" {
		t.Fatalf("groups %v", file.Groups)
	}
	rules := file.Groups[0]["rules"].([]any)
	rule := rules[0].(map[string]any)
	if rule["expr"] != `up{job="rel-tidings"} == 0` || rule["for"] != "5m" {
		t.Errorf("rule %v", rule)
	}
	if got := rule["annotations"].(map[string]any)["summary"]; got != "Tidings pod {{ $labels.pod }} cannot be scraped" {
		t.Errorf("summary %q: Prometheus' own template must be kept as text", got)
	}
}

func TestExtractFailsOnNothing(t *testing.T) {
	for name, in := range map[string]string{
		"no PrometheusRule": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n",
		"empty":             "",
		"no groups":         "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: x\nspec: {}\n",
		"other apiVersion":  "apiVersion: monitoring.coreos.com/v1alpha1\nkind: PrometheusRule\nmetadata:\n  name: x\nspec:\n  groups: [{name: g}]\n",
	} {
		if out, err := extract(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error, output\n%s", name, out)
		}
	}
}
