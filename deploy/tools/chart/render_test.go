package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// releaseName and namespace are those every test renders with.
	releaseName = "rel"
	namespace   = "tidings-test"
	// fullname is the prefix of the release's objects: release name and
	// chart name.
	fullname = "rel-tidings"
	// kubeVersion is the oldest Kubernetes the chart supports (Chart.yaml
	// kubeVersion), which the manifests are rendered for.
	kubeVersion = "1.30.14"
)

// chartDir is the chart, relative to this package.
var chartDir = filepath.Join("..", "..", "helm", "tidings")

// helmPath returns the helm binary: $HELM, as make helm-test sets it, or
// helm on the PATH.
func helmPath(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, err := exec.LookPath("helm")
	if err != nil {
		t.Fatal("helm is not installed: run `make helm-test`, which installs it, or set HELM to its path")
	}
	return h
}

// helm runs helm with args and returns its stdout and stderr.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helmPath(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// helm keeps its caches and config under HOME; keep the tests' apart.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// templateArgs are the helm template arguments for the values files, which
// are relative to the chart, and extra flags.
func templateArgs(values []string, extra ...string) []string {
	args := []string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, v := range values {
		if !filepath.IsAbs(v) {
			v = filepath.Join(chartDir, v)
		}
		args = append(args, "-f", v)
	}
	return append(args, extra...)
}

// serviceMonitor is the part of a Prometheus Operator ServiceMonitor the
// chart renders.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string         `json:"port"`
			Path          string         `json:"path"`
			Interval      string         `json:"interval"`
			ScrapeTimeout string         `json:"scrapeTimeout"`
			Scheme        string         `json:"scheme"`
			TLSConfig     map[string]any `json:"tlsConfig"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the part of a Prometheus Operator PrometheusRule the
// chart renders.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

// ruleGroup is a Prometheus rule group.
type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

// rule is an alerting rule.
type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// release is a rendered chart, decoded into the Kubernetes API types.
type release struct {
	Deployments     []*appsv1.Deployment
	StatefulSets    []*appsv1.StatefulSet
	Services        []*corev1.Service
	ConfigMaps      []*corev1.ConfigMap
	Secrets         []*corev1.Secret
	ServiceAccounts []*corev1.ServiceAccount
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	Ingresses       []*networkingv1.Ingress
	NetworkPolicies []*networkingv1.NetworkPolicy
	ServiceMonitors []*serviceMonitor
	PrometheusRules []*prometheusRule
	// objects is every object's metadata, in the order rendered.
	objects []objectRef
}

type objectRef struct {
	Kind string
	Meta metav1.ObjectMeta
}

// render runs helm template and decodes what it prints; the test fails if
// helm fails.
func render(t *testing.T, values []string, extra ...string) *release {
	t.Helper()
	out, stderr, err := helm(t, templateArgs(values, extra...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", values, err, stderr)
	}
	r, err := decode(out)
	if err != nil {
		t.Fatalf("helm template %v: %v", values, err)
	}
	return r
}

// decode splits a multi-document YAML stream and unmarshals each document,
// strictly (no unknown or duplicate fields), into its API type.
func decode(manifests string) (*release, error) {
	r := &release{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		var head struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // only comments
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			r.Deployments, obj = append(r.Deployments, o), o
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			r.StatefulSets, obj = append(r.StatefulSets, o), o
		case "v1 Service":
			o := &corev1.Service{}
			r.Services, obj = append(r.Services, o), o
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			r.ConfigMaps, obj = append(r.ConfigMaps, o), o
		case "v1 Secret":
			o := &corev1.Secret{}
			r.Secrets, obj = append(r.Secrets, o), o
		case "v1 ServiceAccount":
			o := &corev1.ServiceAccount{}
			r.ServiceAccounts, obj = append(r.ServiceAccounts, o), o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			r.PDBs, obj = append(r.PDBs, o), o
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			r.HPAs, obj = append(r.HPAs, o), o
		case "networking.k8s.io/v1 Ingress":
			o := &networkingv1.Ingress{}
			r.Ingresses, obj = append(r.Ingresses, o), o
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			r.NetworkPolicies, obj = append(r.NetworkPolicies, o), o
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o := &serviceMonitor{}
			r.ServiceMonitors, obj = append(r.ServiceMonitors, o), o
		case "monitoring.coreos.com/v1 PrometheusRule":
			o := &prometheusRule{}
			r.PrometheusRules, obj = append(r.PrometheusRules, o), o
		default:
			return nil, fmt.Errorf("unexpected object %s %s %s", head.APIVersion, head.Kind, head.Name)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s %s: %w", head.Kind, head.Name, err)
		}
		r.objects = append(r.objects, objectRef{Kind: head.Kind, Meta: head.ObjectMeta})
	}
	return r, nil
}

// named returns the object of objs called name, or nil.
func named[T interface{ GetName() string }](objs []T, name string) T {
	for _, o := range objs {
		if o.GetName() == name {
			return o
		}
	}
	var zero T
	return zero
}
