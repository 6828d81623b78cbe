// Command prom-rules extracts the rule groups of every Prometheus Operator
// PrometheusRule in a stream of Kubernetes manifests (helm template's
// output) into one Prometheus rule file, the format `promtool check rules`
// and `promtool test rules` read:
//
//	helm template … | go run ./cmd/prom-rules > rules.yaml
//
// It fails when the stream holds no PrometheusRule or one without groups,
// so that a check of the file cannot pass on nothing.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: prom-rules < manifests.yaml > rules.yaml")
		os.Exit(2)
	}
	out, err := extract(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prom-rules:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}

// ruleFile is a Prometheus rule file: the groups, kept as they are.
type ruleFile struct {
	Groups []map[string]any `json:"groups"`
}

// extract reads manifests and returns the rule file of their PrometheusRules.
func extract(r io.Reader) ([]byte, error) {
	var file ruleFile
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	rules := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Groups []map[string]any `json:"groups"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		if obj.Kind != "PrometheusRule" {
			continue
		}
		if obj.APIVersion != "monitoring.coreos.com/v1" {
			return nil, fmt.Errorf("PrometheusRule %s: apiVersion %q, want monitoring.coreos.com/v1", obj.Metadata.Name, obj.APIVersion)
		}
		if len(obj.Spec.Groups) == 0 {
			return nil, fmt.Errorf("PrometheusRule %s has no rule groups", obj.Metadata.Name)
		}
		rules++
		file.Groups = append(file.Groups, obj.Spec.Groups...)
	}
	if rules == 0 {
		return nil, errors.New("no PrometheusRule in the input")
	}
	return yaml.Marshal(file)
}
