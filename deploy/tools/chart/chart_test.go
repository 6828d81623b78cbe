package chart

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// chartCase is one values file and what its release must contain.
type chartCase struct {
	values string // relative to the chart; "" = the defaults
	// replicas is the Deployment's replica count; 0 when an HPA owns it.
	replicas int32
	// redis is how the broker reaches Redis: "", "url", "existingSecret",
	// "cluster", "sentinel" or "embedded".
	redis string
	// jwt is the key source of session tokens: "", "key", "publicKey" or
	// "jwks".
	jwt string
	// existingSecrets are the Secrets the release uses but does not create,
	// read with secretKeyRef or mounted.
	existingSecrets                                  []string
	hpa, ingress, serviceMonitor, netpol, headless   bool
	sessionsMetric, apiKeys, createsSecret, persists bool
	// tls: the broker serves TLS itself; prometheusRule: the release has one.
	tls, prometheusRule bool
	// config: the values give a config file (the config value).
	config bool
}

// cases covers the default values and every file in ci/.
var cases = []chartCase{
	{values: "", replicas: 1},
	{values: "ci/single-node-values.yaml", replicas: 1, apiKeys: true, createsSecret: true, config: true},
	{values: "ci/external-redis-values.yaml", replicas: 3, redis: "url", createsSecret: true, apiKeys: true,
		existingSecrets: []string{"tidings-api-keys"}, headless: true},
	{values: "ci/redis-cluster-values.yaml", replicas: 3, redis: "cluster", apiKeys: true, createsSecret: true},
	{values: "ci/embedded-redis-values.yaml", replicas: 2, redis: "embedded", netpol: true, persists: true},
	{values: "ci/autoscaling-ingress-values.yaml", redis: "existingSecret", existingSecrets: []string{"tidings-redis"},
		hpa: true, sessionsMetric: true, ingress: true, serviceMonitor: true, netpol: true, apiKeys: true, createsSecret: true,
		headless: true},
	{values: "ci/secure-values.yaml", replicas: 3, redis: "url", jwt: "key", createsSecret: true, apiKeys: true,
		ingress: true, serviceMonitor: true, prometheusRule: true, tls: true,
		existingSecrets: []string{"tidings-api-keys", "tidings-jwt", "tidings-redis-auth", "tidings-redis-tls", "tidings-serving-tls"}},
	{values: "ci/sentinel-public-key-values.yaml", replicas: 2, redis: "sentinel", jwt: "publicKey", netpol: true,
		existingSecrets: []string{"tidings-redis-auth", "tidings-scoped-keys", "tidings-jwt-public-key"}},
}

// caseName names a case in test output.
func caseName(c chartCase) string {
	if c.values == "" {
		return "defaults"
	}
	return c.values
}

// TestEveryCIValuesFileHasACase keeps cases in step with ci/: a values file
// added there without expectations here fails.
func TestEveryCIValuesFileHasACase(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 7 {
		t.Fatalf("ci/ has %d values files, want at least 7", len(files))
	}
	for _, f := range files {
		name := "ci/" + filepath.Base(f)
		if !slices.ContainsFunc(cases, func(c chartCase) bool { return c.values == name }) {
			t.Errorf("%s has no entry in cases", name)
		}
	}
}

func TestRenderedRelease(t *testing.T) {
	for _, c := range cases {
		t.Run(caseName(c), func(t *testing.T) {
			t.Parallel()
			var values []string
			if c.values != "" {
				values = []string{c.values}
			}
			r := render(t, values)
			checkRelease(t, c, r)
		})
	}
}

// checkRelease asserts everything the chart promises of a release.
func checkRelease(t *testing.T, c chartCase, r *release) {
	for _, o := range r.objects {
		if o.Meta.Namespace != namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.Kind, o.Meta.Name, o.Meta.Namespace, namespace)
		}
		if o.Meta.Labels["app.kubernetes.io/instance"] != releaseName {
			t.Errorf("%s %s: no app.kubernetes.io/instance label", o.Kind, o.Meta.Name)
		}
	}
	d := named(r.Deployments, fullname)
	if d == nil || len(r.Deployments) != 1 {
		t.Fatalf("want one Deployment %s, got %d", fullname, len(r.Deployments))
	}
	pod := &d.Spec.Template
	broker := container(t, pod.Spec, "broker")
	cm := named(r.ConfigMaps, fullname)
	if cm == nil {
		t.Fatalf("no ConfigMap %s", fullname)
	}
	env := brokerEnv(t, r, c, broker)

	checkProbes(t, broker, c)
	checkGracePeriod(t, d, broker, env)
	checkHardened(t, "Deployment "+d.Name, pod.Spec)
	checkRollout(t, d, c)
	checkTopologySpread(t, d)
	checkServices(t, r, c, d)
	checkRedis(t, r, c, env)
	checkScaling(t, r, c, d)
	checkIngress(t, r, c)
	checkServiceMonitor(t, r, c)
	checkNetworkPolicies(t, r, c, d)
	checkMountedFiles(t, c, pod.Spec, broker, cm, env)
	checkJWT(t, c, env)
	checkPrometheusRule(t, r, c)

	if env["TIDINGS_DEMO"] != "false" {
		t.Errorf("TIDINGS_DEMO = %q, want false", env["TIDINGS_DEMO"])
	}
	if got := env["TIDINGS_ADDR"]; got != ":8080" || containerPort(broker, "http") != 8080 {
		t.Errorf("TIDINGS_ADDR %q and port http %d: want :8080 and 8080", got, containerPort(broker, "http"))
	}
	if _, ok := env["TIDINGS_API_KEYS"]; ok != c.apiKeys {
		t.Errorf("TIDINGS_API_KEYS set: %v, want %v", ok, c.apiKeys)
	}
	if sa := named(r.ServiceAccounts, pod.Spec.ServiceAccountName); sa == nil {
		t.Errorf("the pods' ServiceAccount %q is not rendered", pod.Spec.ServiceAccountName)
	}
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the pods mount a ServiceAccount token; the broker does not need one")
	}
	if got := len(r.Secrets) > 0; got != c.createsSecret {
		t.Errorf("chart Secret created: %v, want %v", got, c.createsSecret)
	}
}

// container returns the container called name.
func container(t *testing.T, spec corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// containerPort returns the number of the container's port called name, or 0.
func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// brokerEnv resolves the broker container's environment as the kubelet
// would: the ConfigMap of envFrom, then env, with secretKeyRefs read from
// the rendered Secrets. A secret in a Secret the release does not create
// must be one of the case's existingSecrets; it resolves to "<name>/<key>".
func brokerEnv(t *testing.T, r *release, c chartCase, ctr *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range ctr.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: want only configMapRef", from)
		}
		cm := named(r.ConfigMaps, from.ConfigMapRef.Name)
		if cm == nil {
			t.Fatalf("envFrom names ConfigMap %q, which is not rendered", from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if s := named(r.Secrets, ref.Name); s != nil {
				v, ok := s.Data[ref.Key]
				if !ok {
					t.Errorf("%s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
				}
				env[e.Name] = string(v)
			} else if slices.Contains(c.existingSecrets, ref.Name) {
				env[e.Name] = ref.Name + "/" + ref.Key
			} else {
				t.Errorf("%s: Secret %q is neither rendered nor an existing secret of the values", e.Name, ref.Name)
			}
		default:
			t.Errorf("%s: unexpected valueFrom %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

func checkProbes(t *testing.T, ctr *corev1.Container, c chartCase) {
	t.Helper()
	scheme := corev1.URISchemeHTTP
	if c.tls {
		scheme = corev1.URISchemeHTTPS
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readiness", ctr.ReadinessProbe, "/readyz"},
		{"liveness", ctr.LivenessProbe, "/healthz"},
		{"startup", ctr.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s, got %+v", p.name, p.path, p.probe)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s probe path %q, want %q", p.name, g.Path, p.path)
		}
		if g.Scheme != "" && g.Scheme != scheme || g.Scheme == "" && scheme != corev1.URISchemeHTTP {
			t.Errorf("%s probe scheme %q, want %s: the broker serves TLS: %v", p.name, g.Scheme, scheme, c.tls)
		}
		if port := g.Port; !(port.Type == intstr.String && containerPort(ctr, port.StrVal) == 8080) && port.IntValue() != 8080 {
			t.Errorf("%s probe port %s is not the broker's port 8080", p.name, port.String())
		}
	}
}

// checkGracePeriod: the preStop hook sleeps (the image has no shell to run
// a command), and the pod's grace period covers the sleep plus the broker's
// whole shutdown timeout.
func checkGracePeriod(t *testing.T, d *appsv1.Deployment, ctr *corev1.Container, env map[string]string) {
	t.Helper()
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop sleep: %+v", ctr.Lifecycle)
	}
	pre := ctr.Lifecycle.PreStop
	if pre.Exec != nil || pre.HTTPGet != nil || pre.TCPSocket != nil {
		t.Errorf("preStop has more than the sleep action: %+v", pre)
	}
	sleep := time.Duration(pre.Sleep.Seconds) * time.Second
	if sleep <= 0 {
		t.Errorf("preStop sleeps %v", sleep)
	}
	timeout, err := time.ParseDuration(env["TIDINGS_SHUTDOWN_TIMEOUT"])
	if err != nil || timeout <= 0 {
		t.Fatalf("TIDINGS_SHUTDOWN_TIMEOUT %q: %v", env["TIDINGS_SHUTDOWN_TIMEOUT"], err)
	}
	g := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if grace := time.Duration(*g) * time.Second; grace <= timeout+sleep {
		t.Errorf("terminationGracePeriodSeconds %v is not above shutdown timeout %v + preStop %v", grace, timeout, sleep)
	}
}

// checkHardened asserts the security settings of every container of a pod:
// non-root, read-only root filesystem, no capabilities, no privilege
// escalation, RuntimeDefault seccomp.
func checkHardened(t *testing.T, what string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s container %s: no securityContext", what, c.Name)
			continue
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = psc.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			t.Errorf("%s container %s: runAsNonRoot is not true", what, c.Name)
		}
		for _, uid := range []*int64{sc.RunAsUser, psc.RunAsUser} {
			if uid != nil && *uid == 0 {
				t.Errorf("%s container %s: runs as uid 0", what, c.Name)
			}
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s container %s: readOnlyRootFilesystem is not true", what, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s container %s: allowPrivilegeEscalation is not false", what, c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s container %s: privileged", what, c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s container %s: capabilities %+v, want drop ALL and add none", what, c.Name, sc.Capabilities)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s container %s: seccomp profile %+v, want RuntimeDefault", what, c.Name, seccomp)
		}
	}
}

// checkRollout: rolling updates never take a ready pod away first.
func checkRollout(t *testing.T, d *appsv1.Deployment, c chartCase) {
	t.Helper()
	s := d.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil {
		t.Fatalf("strategy %+v: want RollingUpdate with maxUnavailable", s)
	}
	if mu := *s.RollingUpdate.MaxUnavailable; mu.IntValue() != 0 || (mu.Type == intstr.String && mu.StrVal != "0%") {
		t.Errorf("maxUnavailable %s, want 0", mu.String())
	}
	if ms := s.RollingUpdate.MaxSurge; ms == nil || (ms.Type == intstr.Int && ms.IntVal < 1) {
		t.Errorf("maxSurge %v: a rollout with maxUnavailable 0 needs a surge of at least 1", ms)
	}
	switch {
	case c.hpa && d.Spec.Replicas != nil:
		t.Errorf("replicas %d set while an HPA owns the count", *d.Spec.Replicas)
	case !c.hpa && (d.Spec.Replicas == nil || *d.Spec.Replicas != c.replicas):
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, c.replicas)
	}
}

// selects reports whether selector matches the labels.
func selects(t *testing.T, selector *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		t.Fatalf("selector %+v: %v", selector, err)
	}
	return !s.Empty() && s.Matches(labels.Set(set))
}

func checkTopologySpread(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	keys := map[string]bool{}
	for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
		keys[tsc.TopologyKey] = true
		if !selects(t, tsc.LabelSelector, d.Spec.Template.Labels) {
			t.Errorf("topology spread on %s does not select the broker pods", tsc.TopologyKey)
		}
		if tsc.MaxSkew < 1 {
			t.Errorf("topology spread on %s: maxSkew %d", tsc.TopologyKey, tsc.MaxSkew)
		}
	}
	if !keys["topology.kubernetes.io/zone"] {
		t.Error("no topology spread across zones (topology.kubernetes.io/zone)")
	}
	if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("the Deployment's selector does not match its pod template")
	}
}

// checkServices: the Service (and the headless one when asked for) selects
// the broker pods and targets their http port.
func checkServices(t *testing.T, r *release, c chartCase, d *appsv1.Deployment) {
	t.Helper()
	broker := container(t, d.Spec.Template.Spec, "broker")
	for _, name := range []string{fullname, fullname + "-headless"} {
		svc := named(r.Services, name)
		headless := strings.HasSuffix(name, "-headless")
		if headless && (svc != nil) != c.headless {
			t.Errorf("headless Service rendered: %v, want %v", svc != nil, c.headless)
		}
		if svc == nil {
			if !headless {
				t.Errorf("no Service %s", name)
			}
			continue
		}
		if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d.Spec.Template.Labels) {
			t.Errorf("Service %s does not select the broker pods", name)
		}
		if headless && svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s: clusterIP %q, want None", name, svc.Spec.ClusterIP)
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.Type != intstr.String || containerPort(broker, p.TargetPort.StrVal) == 0 {
				t.Errorf("Service %s port %s targets %s, not a named port of the broker", name, p.Name, p.TargetPort.String())
			}
		}
	}
}

func checkRedis(t *testing.T, r *release, c chartCase, env map[string]string) {
	t.Helper()
	url, cluster, sentinel := env["TIDINGS_REDIS"], env["TIDINGS_REDIS_CLUSTER"], env["TIDINGS_REDIS_SENTINEL"]
	if c.redis == "" {
		if url != "" || cluster != "" || sentinel != "" || len(r.StatefulSets) > 0 {
			t.Errorf("no Redis configured, yet TIDINGS_REDIS=%q TIDINGS_REDIS_CLUSTER=%q TIDINGS_REDIS_SENTINEL=%q, %d StatefulSets",
				url, cluster, sentinel, len(r.StatefulSets))
		}
		for name := range env {
			if strings.HasPrefix(name, "TIDINGS_REDIS_") {
				t.Errorf("%s set without Redis", name)
			}
		}
		if _, ok := env["TIDINGS_REDIS_PREFIX"]; ok {
			t.Error("TIDINGS_REDIS_PREFIX set without Redis")
		}
		return
	}
	if d, err := time.ParseDuration(env["TIDINGS_REDIS_TIMEOUT"]); err != nil || d <= 0 {
		t.Errorf("TIDINGS_REDIS_TIMEOUT %q: want a positive duration", env["TIDINGS_REDIS_TIMEOUT"])
	}
	if env["TIDINGS_REDIS_PREFIX"] == "" {
		t.Error("TIDINGS_REDIS_PREFIX is empty")
	}
	if n := len(slices.DeleteFunc([]string{url, cluster, sentinel}, func(s string) bool { return s == "" })); n != 1 {
		t.Fatalf("want exactly one of TIDINGS_REDIS (%q), TIDINGS_REDIS_CLUSTER (%q) and TIDINGS_REDIS_SENTINEL (%q)", url, cluster, sentinel)
	}
	switch c.redis {
	case "url", "embedded":
		checkRedisURL(t, url)
	case "existingSecret":
		if !slices.Contains(c.existingSecrets, strings.Split(url, "/")[0]) {
			t.Errorf("TIDINGS_REDIS comes from %q, not the existing Secret", url)
		}
	case "cluster":
		for _, a := range strings.Split(cluster, ",") {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				t.Errorf("TIDINGS_REDIS_CLUSTER address %q is not host:port", a)
			}
		}
	case "sentinel":
		master, addrs, ok := strings.Cut(sentinel, "@")
		if !ok || master == "" {
			t.Errorf("TIDINGS_REDIS_SENTINEL %q is not master@host:port,…", sentinel)
		}
		for _, a := range strings.Split(addrs, ",") {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				t.Errorf("TIDINGS_REDIS_SENTINEL address %q is not host:port", a)
			}
		}
	}
	if c.redis != "sentinel" {
		for _, name := range []string{"TIDINGS_REDIS_SENTINEL_USERNAME", "TIDINGS_REDIS_SENTINEL_PASSWORD"} {
			if _, ok := env[name]; ok {
				t.Errorf("%s set without Redis Sentinel", name)
			}
		}
	}
	if c.redis == "embedded" {
		checkEmbeddedRedis(t, r, c, url)
	} else if len(r.StatefulSets) > 0 {
		t.Errorf("%d StatefulSets rendered for an external Redis", len(r.StatefulSets))
	}
}

func checkRedisURL(t *testing.T, s string) {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		t.Errorf("TIDINGS_REDIS %q is not a redis:// URL", s)
	}
}

// checkEmbeddedRedis: the StatefulSet, hardened like the broker, behind a
// Service whose DNS name and port are those of TIDINGS_REDIS.
func checkEmbeddedRedis(t *testing.T, r *release, c chartCase, redisURL string) {
	t.Helper()
	name := fullname + "-redis"
	sts := named(r.StatefulSets, name)
	if sts == nil || len(r.StatefulSets) != 1 {
		t.Fatalf("want one StatefulSet %s, got %d", name, len(r.StatefulSets))
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("embedded Redis replicas %v, want 1", sts.Spec.Replicas)
	}
	redis := container(t, sts.Spec.Template.Spec, "redis")
	if redis.Image != "redis:7-alpine" {
		t.Errorf("embedded Redis image %q, want redis:7-alpine", redis.Image)
	}
	checkHardened(t, "StatefulSet "+name, sts.Spec.Template.Spec)
	if got := len(sts.Spec.VolumeClaimTemplates) > 0; got != c.persists {
		t.Errorf("Redis on a PersistentVolumeClaim: %v, want %v", got, c.persists)
	}
	if named(r.Services, sts.Spec.ServiceName) == nil {
		t.Errorf("the StatefulSet's serviceName %q is not rendered", sts.Spec.ServiceName)
	}
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	if want := name + "." + namespace + ".svc"; u.Hostname() != want {
		t.Errorf("TIDINGS_REDIS host %q, want the Service %q", u.Hostname(), want)
	}
	svc := named(r.Services, name)
	if svc == nil {
		t.Fatalf("no Service %s", name)
	}
	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, sts.Spec.Template.Labels) {
		t.Errorf("Service %s does not select the Redis pod", name)
	}
	found := false
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == u.Port() && containerPort(redis, p.TargetPort.StrVal) == 6379 {
			found = true
		}
	}
	if !found {
		t.Errorf("Service %s has no port %s leading to Redis' 6379", name, u.Port())
	}
	for _, d := range r.Deployments {
		if selects(t, d.Spec.Selector, sts.Spec.Template.Labels) {
			t.Error("the broker Deployment's selector matches the Redis pod")
		}
	}
}

// checkScaling: a PodDisruptionBudget exactly when there can be more than
// one pod, and a valid HPA when autoscaling is on.
func checkScaling(t *testing.T, r *release, c chartCase, d *appsv1.Deployment) {
	t.Helper()
	wantPDB := c.hpa || c.replicas > 1
	if (len(r.PDBs) > 0) != wantPDB {
		t.Errorf("PodDisruptionBudget rendered: %v, want %v (replicas %d, autoscaling %v)", len(r.PDBs) > 0, wantPDB, c.replicas, c.hpa)
	}
	for _, pdb := range r.PDBs {
		if !selects(t, pdb.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("PDB %s does not select the broker pods", pdb.Name)
		}
		if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
			t.Errorf("PDB %s has neither maxUnavailable nor minAvailable", pdb.Name)
		}
	}
	if (len(r.HPAs) > 0) != c.hpa {
		t.Fatalf("HPA rendered: %v, want %v", len(r.HPAs) > 0, c.hpa)
	}
	if !c.hpa {
		return
	}
	h := r.HPAs[0]
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %+v, not the broker Deployment", ref)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		t.Errorf("HPA min %v max %d", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	var cpu, sessions bool
	for _, m := range h.Spec.Metrics {
		switch {
		case m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource.Name == corev1.ResourceCPU:
			cpu = m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
		case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods.Metric.Name == "tidings_sessions":
			sessions = m.Pods.Target.Type == autoscalingv2.AverageValueMetricType && m.Pods.Target.AverageValue != nil &&
				m.Pods.Target.AverageValue.Sign() > 0
		default:
			t.Errorf("unexpected HPA metric %+v", m)
		}
	}
	if !cpu || sessions != c.sessionsMetric {
		t.Errorf("HPA metrics: cpu %v, tidings_sessions %v; want cpu and tidings_sessions %v", cpu, sessions, c.sessionsMetric)
	}
	container := container(t, d.Spec.Template.Spec, "broker")
	if _, ok := container.Resources.Requests[corev1.ResourceCPU]; cpu && !ok {
		t.Error("HPA on CPU utilization without a CPU request")
	}
	if sd := h.Spec.Behavior; sd == nil || sd.ScaleDown == nil || len(sd.ScaleDown.Policies) == 0 {
		t.Error("HPA without a scale-down policy: scaling down closes sessions and should be slow")
	}
}

func checkIngress(t *testing.T, r *release, c chartCase) {
	t.Helper()
	if (len(r.Ingresses) > 0) != c.ingress {
		t.Fatalf("Ingress rendered: %v, want %v", len(r.Ingresses) > 0, c.ingress)
	}
	for _, ing := range r.Ingresses {
		for _, a := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
			if s, err := strconv.Atoi(ing.Annotations[a]); err != nil || s < 3600 {
				t.Errorf("Ingress %s: %s = %q, want 3600 or more for WebSocket sessions", ing.Name, a, ing.Annotations[a])
			}
		}
		if v := ing.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"]; v != "off" {
			t.Errorf("Ingress %s: proxy-buffering = %q, want off for /v1/sse and /v1/stream", ing.Name, v)
		}
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if routes(p, "/metrics") || routes(p, "/healthz") {
					t.Errorf("Ingress path %s (%s) routes the operations endpoints", p.Path, *p.PathType)
				}
				if !routes(p, "/v1/ws") || !routes(p, "/v1/publish") || !routes(p, "/v1/sse") || !routes(p, "/v1/stream") {
					t.Errorf("Ingress path %s (%s) does not route /v1/ws, /v1/sse, /v1/stream and /v1/publish", p.Path, *p.PathType)
				}
				b := p.Backend.Service
				if b == nil || b.Name != fullname || named(r.Services, b.Name) == nil {
					t.Errorf("Ingress path %s: backend %+v is not the broker Service", p.Path, b)
					continue
				}
				svc := named(r.Services, b.Name)
				if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return sp.Name == b.Port.Name && b.Port.Name != "" || b.Port.Number != 0 && sp.Port == b.Port.Number
				}) {
					t.Errorf("Ingress path %s: port %+v is not a port of Service %s", p.Path, b.Port, svc.Name)
				}
			}
		}
	}
}

func checkServiceMonitor(t *testing.T, r *release, c chartCase) {
	t.Helper()
	if (len(r.ServiceMonitors) > 0) != c.serviceMonitor {
		t.Fatalf("ServiceMonitor rendered: %v, want %v", len(r.ServiceMonitors) > 0, c.serviceMonitor)
	}
	for _, sm := range r.ServiceMonitors {
		var matched []string
		for _, svc := range r.Services {
			if selects(t, &sm.Spec.Selector, svc.Labels) {
				matched = append(matched, svc.Name)
			}
		}
		if len(matched) != 1 || matched[0] != fullname {
			t.Errorf("ServiceMonitor selects Services %v, want only %s (each pod scraped once)", matched, fullname)
		}
		svc := named(r.Services, fullname)
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Path != "/metrics" || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
			t.Errorf("ServiceMonitor scrapes port %q path %q, want a Service port and /metrics", ep.Port, ep.Path)
		}
		if want := map[bool]string{true: "https", false: ""}[c.tls]; ep.Scheme != want {
			t.Errorf("ServiceMonitor scheme %q, want %q (the broker serves TLS: %v)", ep.Scheme, want, c.tls)
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
			t.Errorf("ServiceMonitor namespaces %v", sm.Spec.NamespaceSelector.MatchNames)
		}
	}
}

// checkNetworkPolicies: the broker's policy lets clients in on its port and
// lets the broker out to DNS and Redis; the embedded Redis admits only the
// broker.
func checkNetworkPolicies(t *testing.T, r *release, c chartCase, d *appsv1.Deployment) {
	t.Helper()
	if !c.netpol {
		if len(r.NetworkPolicies) > 0 {
			t.Errorf("%d NetworkPolicies rendered while disabled", len(r.NetworkPolicies))
		}
		return
	}
	np := named(r.NetworkPolicies, fullname)
	if np == nil {
		t.Fatalf("no NetworkPolicy %s", fullname)
	}
	if !selects(t, &np.Spec.PodSelector, d.Spec.Template.Labels) {
		t.Error("the broker NetworkPolicy does not select the broker pods")
	}
	allowsPort := func(ports []networkingv1.NetworkPolicyPort, name string, number int) bool {
		return slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool {
			return p.Port != nil && (p.Port.StrVal == name && name != "" || p.Port.IntValue() == number && number != 0)
		})
	}
	if !slices.ContainsFunc(np.Spec.Ingress, func(rule networkingv1.NetworkPolicyIngressRule) bool {
		return allowsPort(rule.Ports, "http", 0)
	}) {
		t.Error("the broker NetworkPolicy admits nothing on port http")
	}
	if !slices.ContainsFunc(np.Spec.Egress, func(rule networkingv1.NetworkPolicyEgressRule) bool {
		return allowsPort(rule.Ports, "", 53)
	}) {
		t.Error("the broker NetworkPolicy lets no DNS out")
	}
	if !slices.ContainsFunc(np.Spec.Egress, func(rule networkingv1.NetworkPolicyEgressRule) bool {
		return allowsPort(rule.Ports, "", 6379)
	}) {
		t.Error("the broker NetworkPolicy does not let the broker reach Redis on 6379")
	}
	if c.redis != "embedded" {
		return
	}
	rp := named(r.NetworkPolicies, fullname+"-redis")
	sts := named(r.StatefulSets, fullname+"-redis")
	if rp == nil || sts == nil {
		t.Fatal("no NetworkPolicy for the embedded Redis")
	}
	if !selects(t, &rp.Spec.PodSelector, sts.Spec.Template.Labels) {
		t.Error("the Redis NetworkPolicy does not select the Redis pod")
	}
	admitsBroker := slices.ContainsFunc(rp.Spec.Ingress, func(rule networkingv1.NetworkPolicyIngressRule) bool {
		return slices.ContainsFunc(rule.From, func(p networkingv1.NetworkPolicyPeer) bool {
			return p.PodSelector != nil && selects(t, p.PodSelector, d.Spec.Template.Labels)
		})
	})
	if !admitsBroker {
		t.Error("the Redis NetworkPolicy does not admit the broker pods")
	}
}

// TestMultipleReplicasNeedRedis: values that would run several pods without
// a shared Redis must not render, and must say why.
func TestMultipleReplicasNeedRedis(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"replicas", []string{"replicaCount=3"}, "replicaCount > 1 or autoscaling.enabled needs Redis"},
		{"autoscaling", []string{"autoscaling.enabled=true"}, "replicaCount > 1 or autoscaling.enabled needs Redis"},
		{"two Redis", []string{"redis.url=redis://r:6379/0", "redis.embedded.enabled=true"},
			"set only one of redis.url, redis.existingSecret, redis.cluster, redis.sentinel and redis.embedded.enabled"},
		{"two key sources", []string{"auth.apiKeys={abcdefgh12}", "auth.existingSecret=keys"}, "set auth.apiKeys or auth.existingSecret, not both"},
		{"autoscaling without metric", []string{"redis.url=redis://r:6379/0", "autoscaling.enabled=true", "autoscaling.targetCPUUtilizationPercentage=0"},
			"autoscaling.enabled needs a metric"},
		{"autoscaling min above max", []string{"redis.url=redis://r:6379/0", "autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"},
			"autoscaling.minReplicas (5) is above autoscaling.maxReplicas (3)"},
		{"CPU autoscaling without CPU request", []string{"redis.url=redis://r:6379/0", "autoscaling.enabled=true", "resources.requests.cpu=null"},
			"autoscaling on CPU needs resources.requests.cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantRenderRefused(t, tc.set, tc.want)
		})
	}
	t.Run("the message says why", func(t *testing.T) {
		_, stderr, err := helm(t, templateArgs(nil, "--set", "replicaCount=2")...)
		if err == nil || !strings.Contains(stderr, "would not see each other's messages") {
			t.Errorf("error %v %q does not explain the need for Redis", err, stderr)
		}
	})
}

// TestSchemaRejectsBadValues: values.schema.json types every value, so a
// mistyped, out-of-range or unknown value fails helm lint and helm template.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want string // the value's path in helm's message
	}{
		{`replicaCount: "three"`, "/replicaCount"},
		{`replicaCount: 0`, "/replicaCount"},
		{`replicas: 3`, "replicas"}, // unknown key
		{"image:\n  pullPolicy: Sometimes", "/image/pullPolicy"},
		{"image:\n  digest: latest", "/image/digest"},
		{"broker:\n  historyTTL: 5 minutes", "/broker/historyTTL"},
		{"broker:\n  shutdownTimeoutSeconds: 30s", "/broker/shutdownTimeoutSeconds"},
		{"broker:\n  logLevel: verbose", "/broker/logLevel"},
		{"broker:\n  shards: 100000", "/broker/shards"},
		{"broker:\n  allowedOrigins: [app.example.com]", "/broker/allowedOrigins/0"},
		{"broker:\n  heartbat: 10s", "heartbat"},
		{"auth:\n  apiKeys: [short]", "/auth/apiKeys/0"},
		{"redis:\n  url: http://redis:6379", "/redis/url"},
		{"redis:\n  cluster: [redis-0]", "/redis/cluster/0"},
		{"redis:\n  timeout: 2", "/redis/timeout"},
		{"redis:\n  embedded:\n    enabled: yes please", "/redis/embedded/enabled"},
		{"service:\n  type: Ingress", "/service/type"},
		{"lifecycle:\n  preStopSleepSeconds: 0", "/lifecycle/preStopSleepSeconds"},
		{"podSecurityContext:\n  runAsUser: 0", "/podSecurityContext/runAsUser"},
		{"resources:\n  limits:\n    memory: lots", "/resources/limits/memory"},
		{"autoscaling:\n  targetCPUUtilizationPercentage: 150", "/autoscaling/targetCPUUtilizationPercentage"},
		{"ingress:\n  hosts:\n    - host: x\n      paths: [{path: /, pathType: Regex}]", "/ingress/hosts/0/paths/0/pathType"},
		{"serviceMonitor:\n  interval: 30", "/serviceMonitor/interval"},
		{"networkPolicy:\n  redisPorts: [70000]", "/networkPolicy/redisPorts/0"},
		{"broker:\n  trustedProxies: 10.0.0.0/8;192.168.0.0/16", "/broker/trustedProxies"},
		{"broker:\n  trustedProxies: none private", "/broker/trustedProxies"}, // (a comma would split the file name helm -f gets)
		{"auth:\n  jwt:\n    jwksURL: auth.example.com/jwks", "/auth/jwt/jwksURL"},
		{"auth:\n  jwt:\n    leeway: 5", "/auth/jwt/leeway"},
		{"auth:\n  jwt:\n    existingSecret: Not_A_Name", "/auth/jwt/existingSecret"},
		{"auth:\n  jwt:\n    publicKey:\n      path: keys/jwt.pem", "/auth/jwt/publicKey/path"},
		{"auth:\n  apiKeysFile:\n    secret: keys", "secret"}, // unknown key
		{"redis:\n  password: s3cret", "/redis/password"},
		{"redis:\n  tls:\n    enabled: \"true\"", "/redis/tls/enabled"},
		{"redis:\n  sentinel:\n    addresses: [sentinel-0]", "/redis/sentinel/addresses/0"},
		{"limits:\n  maxSessions: -1", "/limits/maxSessions"},
		{"limits:\n  opRate: fast", "/limits/opRate"},
		{"limits:\n  maxConns: 1.5", "/limits/maxConns"},
		{"tls:\n  secretName: tidings-tls", "secretName"}, // unknown key
		{"otel:\n  tracesExporter: jaeger", "/otel/tracesExporter"},
		{"otel:\n  protocol: http", "/otel/protocol"},
		{"extraVolumeMounts:\n  - name: x\n    mountPath: relative", "/extraVolumeMounts/0/mountPath"},
		{"prometheusRule:\n  enabled: 1", "/prometheusRule/enabled"},
		{"prometheusRule:\n  rules:\n    down:\n      enabled: true\n      for: 5 minutes\n      severity: critical",
			"/prometheusRule/rules/down/for"},
		{"prometheusRule:\n  rules:\n    connectionsNearLimit:\n      enabled: true\n      for: 5m\n      severity: warning\n      threshold: 85",
			"/prometheusRule/rules/connectionsNearLimit/threshold"},
		{"prometheusRule:\n  rules:\n    slowConsumer:\n      enabled: true", "slowConsumer"}, // unknown rule
		{"config:\n  namespaces:\n    - pattern: a\n      client_publish: all", "/config/namespaces/0/client_publish"},
		{"config:\n  namespaces:\n    - history_size: 3", "/config/namespaces/0"}, // no pattern
		{"config:\n  namespaces:\n    - pattern: a\n      histroy_size: 3", "histroy_size"},
		{"config:\n  History_Size: 3", "History_Size"},
		{"config:\n  jwt-key: a-secret-in-a-configmap", "/config/jwt-key"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(t.TempDir(), "bad-values.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out, stderr, err := helm(t, "lint", "--strict", chartDir, "-f", f)
			if err == nil {
				t.Fatalf("helm lint --strict passed:\n%s", out)
			}
			if msg := out + stderr; !strings.Contains(msg, tc.want) {
				t.Errorf("helm lint's message does not name %s:\n%s", tc.want, msg)
			}
			if _, _, err := helm(t, templateArgs([]string{f})...); err == nil {
				t.Error("helm template rendered the bad values")
			}
		})
	}
}

// TestGracePeriodFollowsValues: terminationGracePeriodSeconds is computed
// from the shutdown timeout and the preStop sleep, not fixed.
func TestGracePeriodFollowsValues(t *testing.T) {
	for _, tc := range []struct{ timeout, sleep, margin, want int64 }{
		{30, 10, 10, 50},
		{120, 5, 15, 140},
		{1, 1, 1, 3},
	} {
		t.Run(fmt.Sprint(tc.timeout, "+", tc.sleep, "+", tc.margin), func(t *testing.T) {
			t.Parallel()
			r := render(t, nil,
				"--set", fmt.Sprint("broker.shutdownTimeoutSeconds=", tc.timeout),
				"--set", fmt.Sprint("lifecycle.preStopSleepSeconds=", tc.sleep),
				"--set", fmt.Sprint("lifecycle.terminationGraceMarginSeconds=", tc.margin))
			d := r.Deployments[0]
			if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != tc.want {
				t.Errorf("terminationGracePeriodSeconds %v, want %d", g, tc.want)
			}
			ctr := container(t, d.Spec.Template.Spec, "broker")
			if s := ctr.Lifecycle.PreStop.Sleep.Seconds; s != tc.sleep {
				t.Errorf("preStop sleeps %d, want %d", s, tc.sleep)
			}
			cm := named(r.ConfigMaps, fullname)
			if got, want := cm.Data["TIDINGS_SHUTDOWN_TIMEOUT"], fmt.Sprintf("%ds", tc.timeout); got != want {
				t.Errorf("TIDINGS_SHUTDOWN_TIMEOUT %q, want %q", got, want)
			}
		})
	}
}

// TestConfigChangeRollsPods: the pod template carries checksums of the
// ConfigMap and Secret, so that changing either rolls the pods.
func TestConfigChangeRollsPods(t *testing.T) {
	t.Parallel()
	annotations := func(set ...string) map[string]string {
		var extra []string
		for _, s := range set {
			extra = append(extra, "--set", s)
		}
		return render(t, nil, extra...).Deployments[0].Spec.Template.Annotations
	}
	base := annotations()
	for _, tc := range []struct{ set, key string }{
		{"broker.historySize=500", "checksum/config"},
		{"auth.apiKeys={abcdefgh12}", "checksum/secret"},
	} {
		if got := annotations(tc.set); got[tc.key] == "" || got[tc.key] == base[tc.key] {
			t.Errorf("--set %s left %s at %q", tc.set, tc.key, base[tc.key])
		}
	}
	keys := make([]string, 0, len(base))
	for k := range base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !slices.Contains(keys, "checksum/config") || !slices.Contains(keys, "checksum/secret") {
		t.Errorf("pod annotations %v lack the checksums", keys)
	}
}

// wantRenderRefused renders the chart with the --set values given and
// checks that helm refuses, saying want.
func wantRenderRefused(t *testing.T, set []string, want string) {
	t.Helper()
	var extra []string
	for _, s := range set {
		extra = append(extra, "--set", s)
	}
	out, stderr, err := helm(t, templateArgs(nil, extra...)...)
	if err == nil {
		t.Fatalf("rendered without error:\n%.500s", out)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("error %q does not say %q", strings.TrimSpace(stderr), want)
	}
}
