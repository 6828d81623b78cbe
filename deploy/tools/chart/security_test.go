package chart

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// privateRanges is the chart's default of broker.trustedProxies: the ranges
// an in-cluster ingress controller's pod addresses are in.
const privateRanges = "private"

// secretEnv are the variables that carry secrets: they may come only from
// a Secret (valueFrom.secretKeyRef), never from the ConfigMap or a plain
// value.
var secretEnv = []string{
	"TIDINGS_API_KEYS", "TIDINGS_REDIS", "TIDINGS_JWT_KEY", "TIDINGS_REDIS_PASSWORD", "TIDINGS_REDIS_SENTINEL_PASSWORD",
}

// fileEnv are the variables that name a file the broker reads.
var fileEnv = []string{
	"TIDINGS_JWT_PUBLIC_KEY_FILE", "TIDINGS_API_KEYS_FILE", "TIDINGS_TLS_CERT", "TIDINGS_TLS_KEY",
	"TIDINGS_REDIS_TLS_CA", "TIDINGS_REDIS_TLS_CERT", "TIDINGS_REDIS_TLS_KEY",
}

// securityEnv is every variable the security values set; with the default
// values the chart sets none of them but TIDINGS_TRUSTED_PROXIES.
var securityEnv = append(append([]string{
	"TIDINGS_API_KEYS_FILE", "TIDINGS_JWT_JWKS_URL", "TIDINGS_JWT_AUDIENCE", "TIDINGS_JWT_ISSUER", "TIDINGS_JWT_LEEWAY",
	"TIDINGS_REDIS_USERNAME", "TIDINGS_REDIS_TLS", "TIDINGS_REDIS_TLS_SERVER_NAME", "TIDINGS_REDIS_SENTINEL",
	"TIDINGS_REDIS_SENTINEL_USERNAME",
	"TIDINGS_MAX_SESSIONS", "TIDINGS_MAX_CONNS", "TIDINGS_IP_CONN_RATE", "TIDINGS_IP_CONN_BURST", "TIDINGS_IP_MAX_CONNS",
	"TIDINGS_HTTP_IP_MAX_IDLE", "TIDINGS_MAX_SUBSCRIPTIONS", "TIDINGS_OP_RATE", "TIDINGS_OP_BURST", "TIDINGS_PUBLISH_RATE",
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}, secretEnv...), fileEnv...)

// routes reports whether the Ingress path sends requests for p to the
// broker, as Kubernetes matches paths: Exact whole, Prefix by path
// elements; ImplementationSpecific is taken as a plain prefix.
func routes(ip networkingv1.HTTPIngressPath, p string) bool {
	switch *ip.PathType {
	case networkingv1.PathTypeExact:
		return ip.Path == p
	case networkingv1.PathTypePrefix:
		prefix := strings.TrimSuffix(ip.Path, "/")
		return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
	default:
		return strings.HasPrefix(p, ip.Path)
	}
}

// secretRefs returns the container's variables that come from Secrets, as
// "secret/key".
func secretRefs(ctr *corev1.Container) map[string]string {
	refs := map[string]string{}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return refs
}

// plainEnv returns the variables the container gets as plain values: the
// ConfigMap of envFrom and env entries with a value.
func plainEnv(t *testing.T, r *release, ctr *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range ctr.EnvFrom {
		if cm := named(r.ConfigMaps, from.ConfigMapRef.Name); cm != nil {
			maps.Copy(env, cm.Data)
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// mountedFile is a file the pod gets from a Secret: the Secret and key.
type mountedFile struct{ secret, key string }

// mountedFiles returns the files the broker container sees from Secret
// volumes, by path.
func mountedFiles(t *testing.T, spec corev1.PodSpec, ctr *corev1.Container) map[string]mountedFile {
	t.Helper()
	files := map[string]mountedFile{}
	for _, m := range ctr.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Errorf("volumeMount %s names no volume of the pod", m.Name)
			continue
		}
		v := spec.Volumes[i]
		if v.Secret == nil {
			continue
		}
		if m.SubPath != "" {
			t.Errorf("Secret volume %s is mounted with subPath: a renewed Secret would not reach the pod", m.Name)
		}
		if !m.ReadOnly {
			t.Errorf("Secret volume %s is mounted read-write", m.Name)
		}
		for _, it := range v.Secret.Items {
			files[path.Join(m.MountPath, it.Path)] = mountedFile{v.Secret.SecretName, it.Key}
		}
	}
	return files
}

// checkMountedFiles: every file variable names a file mounted from a
// Secret of the values (or a path the values give), every volume is
// mounted, and secrets are never plain values.
func checkMountedFiles(t *testing.T, c chartCase, spec corev1.PodSpec, ctr *corev1.Container, cm *corev1.ConfigMap, env map[string]string) {
	t.Helper()
	files := mountedFiles(t, spec, ctr)
	for _, name := range fileEnv {
		p, ok := env[name]
		if !ok {
			continue
		}
		f, ok := files[p]
		if !ok {
			t.Errorf("%s = %q: no file of a mounted Secret is there", name, p)
			continue
		}
		if !slices.Contains(c.existingSecrets, f.secret) {
			t.Errorf("%s: mounted from Secret %q, which is not an existing Secret of the values", name, f.secret)
		}
	}
	for _, v := range spec.Volumes {
		if !slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name }) {
			t.Errorf("volume %s is not mounted", v.Name)
		}
		if v.Secret != nil && !slices.Contains(c.existingSecrets, v.Secret.SecretName) {
			t.Errorf("volume %s: Secret %q is not an existing Secret of the values", v.Name, v.Secret.SecretName)
		}
	}
	for _, e := range ctr.Env {
		if slices.Contains(secretEnv, e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s is a plain value; it must come from a Secret", e.Name)
		}
	}
	for _, name := range secretEnv {
		if name == "TIDINGS_REDIS" && c.redis == "embedded" {
			continue // the embedded Redis' URL, which carries no password
		}
		if _, ok := cm.Data[name]; ok {
			t.Errorf("%s is in ConfigMap %s; it must come from a Secret", name, cm.Name)
		}
	}
}

// checkJWT: the broker gets exactly the token key source of the case.
func checkJWT(t *testing.T, c chartCase, env map[string]string) {
	t.Helper()
	sources := map[string]string{"key": "TIDINGS_JWT_KEY", "publicKey": "TIDINGS_JWT_PUBLIC_KEY_FILE", "jwks": "TIDINGS_JWT_JWKS_URL"}
	for source, name := range sources {
		if _, ok := env[name]; ok != (c.jwt == source) {
			t.Errorf("%s set: %v, want %v (token keys from %q)", name, ok, !ok, c.jwt)
		}
	}
	if c.jwt == "" {
		for _, name := range []string{"TIDINGS_JWT_AUDIENCE", "TIDINGS_JWT_ISSUER", "TIDINGS_JWT_LEEWAY"} {
			if _, ok := env[name]; ok {
				t.Errorf("%s set without a token key: the broker refuses to start", name)
			}
		}
	}
}

// readmeMetrics returns the metric names README.md documents.
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\btidings_[a-z0-9_]+`).FindAllString(string(b), -1) {
		names[m] = true
	}
	if !names["tidings_sessions"] || !names["tidings_delivery_latency_seconds"] {
		t.Fatalf("README.md names no tidings_sessions or tidings_delivery_latency_seconds: %v", names)
	}
	return names
}

// selectorOf matches the series selectors of a PromQL expression: a metric
// name and its label matchers.
var selectorOf = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)

// foreignMetrics are the series the rules read that are not the broker's:
// Prometheus' own, the process collector's, kube-state-metrics'.
var foreignMetrics = map[string]bool{"up": true, "process_max_fds": true, "kube_deployment_status_replicas_unavailable": true}

// checkPrometheusRule: a PrometheusRule exactly when enabled, whose every
// alert has a for, a severity, a summary and a description, and reads
// only metrics the broker documents, of this release.
func checkPrometheusRule(t *testing.T, r *release, c chartCase) {
	t.Helper()
	if (len(r.PrometheusRules) > 0) != c.prometheusRule {
		t.Fatalf("PrometheusRule rendered: %v, want %v", len(r.PrometheusRules) > 0, c.prometheusRule)
	}
	if !c.prometheusRule {
		return
	}
	known := readmeMetrics(t)
	pr := named(r.PrometheusRules, fullname)
	if pr == nil || len(pr.Spec.Groups) == 0 {
		t.Fatalf("no PrometheusRule %s with rule groups", fullname)
	}
	for _, g := range pr.Spec.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("rule group %q has %d rules", g.Name, len(g.Rules))
		}
		for _, rl := range g.Rules {
			if !regexp.MustCompile(`^Tidings[A-Za-z]+$`).MatchString(rl.Alert) {
				t.Errorf("alert %q: want a Tidings… name", rl.Alert)
			}
			if !regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`).MatchString(rl.For) {
				t.Errorf("%s: for %q is not a Prometheus duration", rl.Alert, rl.For)
			}
			if rl.Labels["severity"] == "" || rl.Annotations["summary"] == "" || rl.Annotations["description"] == "" {
				t.Errorf("%s: severity %q, summary %q, description %q: want all three", rl.Alert, rl.Labels["severity"],
					rl.Annotations["summary"], rl.Annotations["description"])
			}
			sels := selectorOf.FindAllStringSubmatch(rl.Expr, -1)
			if len(sels) == 0 {
				t.Errorf("%s: no series selector in %q", rl.Alert, rl.Expr)
			}
			for _, sel := range sels {
				metric, matchers := sel[1], sel[2]
				base := strings.TrimSuffix(metric, "_bucket")
				if !known[base] && !foreignMetrics[metric] {
					t.Errorf("%s reads %s, which README.md does not document", rl.Alert, metric)
				}
				if !strings.Contains(matchers, `namespace="`+namespace+`"`) ||
					!strings.Contains(matchers, `job="`+fullname+`"`) && !strings.Contains(matchers, `deployment="`+fullname+`"`) {
					t.Errorf("%s: selector {%s} does not select this release", rl.Alert, matchers)
				}
			}
		}
	}
}

// TestSecurityEnv: the security values become the expected variables:
// secrets with valueFrom.secretKeyRef to the Secrets of the values, the
// rest as plain values, and the files mounted from Secrets at the paths
// the variables name.
func TestSecurityEnv(t *testing.T) {
	type volume struct {
		secret string
		items  map[string]string // key → file name
		mount  string
	}
	for _, tc := range []struct {
		values  string
		secrets map[string]string // variable → secret/key
		plain   map[string]string
		absent  []string
		volumes map[string]volume
		extra   map[string]string // extra volume → mount path
	}{
		{
			values: "ci/secure-values.yaml",
			secrets: map[string]string{
				"TIDINGS_JWT_KEY":        "tidings-jwt/hmac-key",
				"TIDINGS_API_KEYS":       "tidings-api-keys/api-keys",
				"TIDINGS_REDIS":          fullname + "/redis-url",
				"TIDINGS_REDIS_PASSWORD": "tidings-redis-auth/password",
			},
			plain: map[string]string{
				"TIDINGS_JWT_AUDIENCE":          "tidings",
				"TIDINGS_JWT_ISSUER":            "https://auth.example.com/",
				"TIDINGS_JWT_LEEWAY":            "10s",
				"TIDINGS_API_KEYS_FILE":         "/etc/tidings/api-keys/api-keys.json",
				"TIDINGS_TLS_CERT":              "/etc/tidings/tls/tls.crt",
				"TIDINGS_TLS_KEY":               "/etc/tidings/tls/tls.key",
				"TIDINGS_REDIS_USERNAME":        "tidings",
				"TIDINGS_REDIS_TLS":             "true",
				"TIDINGS_REDIS_TLS_SERVER_NAME": "redis-master.redis.svc",
				"TIDINGS_REDIS_TLS_CA":          "/etc/tidings/redis-tls/ca.crt",
				"TIDINGS_REDIS_TLS_CERT":        "/etc/tidings/redis-tls/tls.crt",
				"TIDINGS_REDIS_TLS_KEY":         "/etc/tidings/redis-tls/tls.key",
				"TIDINGS_TRUSTED_PROXIES":       "10.42.0.0/16,fd00:42::/56",
				"TIDINGS_MAX_SESSIONS":          "20000",
				"TIDINGS_MAX_CONNS":             "25000",
				"TIDINGS_IP_CONN_RATE":          "20",
				"TIDINGS_IP_CONN_BURST":         "200",
				"TIDINGS_IP_MAX_CONNS":          "100",
				"TIDINGS_HTTP_IP_MAX_IDLE":      "16",
				"TIDINGS_MAX_SUBSCRIPTIONS":     "200",
				"TIDINGS_OP_RATE":               "50.5",
				"TIDINGS_OP_BURST":              "100",
				"TIDINGS_PUBLISH_RATE":          "0",
				"OTEL_TRACES_EXPORTER":          "otlp",
				"OTEL_METRICS_EXPORTER":         "prometheus",
				"OTEL_EXPORTER_OTLP_ENDPOINT":   "http://otel-collector.monitoring.svc:4318",
				"OTEL_EXPORTER_OTLP_PROTOCOL":   "http/protobuf",
				"OTEL_SERVICE_NAME":             "tidings-ci",
				"OTEL_RESOURCE_ATTRIBUTES":      "deployment.environment=ci,team=platform",
				"OTEL_TRACES_SAMPLER":           "parentbased_traceidratio",
			},
			absent: []string{"TIDINGS_JWT_PUBLIC_KEY_FILE", "TIDINGS_JWT_JWKS_URL", "TIDINGS_REDIS_SENTINEL",
				"TIDINGS_REDIS_SENTINEL_USERNAME", "TIDINGS_REDIS_SENTINEL_PASSWORD", "TIDINGS_REDIS_CLUSTER"},
			volumes: map[string]volume{
				"api-keys-file": {"tidings-api-keys", map[string]string{"scoped-keys.json": "api-keys.json"}, "/etc/tidings/api-keys"},
				"tls":           {"tidings-serving-tls", map[string]string{"tls.crt": "tls.crt", "tls.key": "tls.key"}, "/etc/tidings/tls"},
				"redis-tls": {"tidings-redis-tls", map[string]string{"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"},
					"/etc/tidings/redis-tls"},
			},
			extra: map[string]string{"extra-ca": "/etc/tidings/extra-ca"},
		},
		{
			values: "ci/sentinel-public-key-values.yaml",
			secrets: map[string]string{
				"TIDINGS_REDIS_PASSWORD":          "tidings-redis-auth/redis-password",
				"TIDINGS_REDIS_SENTINEL_PASSWORD": "tidings-redis-auth/sentinel-password",
			},
			plain: map[string]string{
				"TIDINGS_REDIS_SENTINEL": "mymaster@redis-sentinel-0.redis-sentinel.redis.svc:26379," +
					"redis-sentinel-1.redis-sentinel.redis.svc:26379,redis-sentinel-2.redis-sentinel.redis.svc:26379",
				"TIDINGS_REDIS_SENTINEL_USERNAME": "sentinel-user",
				"TIDINGS_REDIS_USERNAME":          "tidings",
				"TIDINGS_REDIS_TLS":               "true",
				"TIDINGS_JWT_PUBLIC_KEY_FILE":     "/etc/tidings/jwt/public-key.pem",
				"TIDINGS_JWT_ISSUER":              "https://auth.example.com/",
				"TIDINGS_API_KEYS_FILE":           "/etc/tidings/api-keys/api-keys.json",
				"TIDINGS_TRUSTED_PROXIES":         "none",
				"TIDINGS_MAX_SESSIONS":            "0",
				"TIDINGS_OP_RATE":                 "200",
			},
			absent: []string{"TIDINGS_JWT_KEY", "TIDINGS_JWT_JWKS_URL", "TIDINGS_API_KEYS", "TIDINGS_REDIS", "TIDINGS_REDIS_TLS_CA",
				"TIDINGS_REDIS_TLS_CERT", "TIDINGS_TLS_CERT", "TIDINGS_MAX_CONNS", "TIDINGS_OP_BURST", "OTEL_TRACES_EXPORTER"},
			volumes: map[string]volume{
				"api-keys-file":  {"tidings-scoped-keys", map[string]string{"api-keys.json": "api-keys.json"}, "/etc/tidings/api-keys"},
				"jwt-public-key": {"tidings-jwt-public-key", map[string]string{"public-key.pem": "public-key.pem"}, "/etc/tidings/jwt"},
			},
		},
	} {
		t.Run(tc.values, func(t *testing.T) {
			t.Parallel()
			r := render(t, []string{tc.values})
			spec := r.Deployments[0].Spec.Template.Spec
			ctr := container(t, spec, "broker")
			refs, plain := secretRefs(ctr), plainEnv(t, r, ctr)
			if !maps.Equal(refs, tc.secrets) {
				t.Errorf("variables from Secrets:\n got %v\nwant %v", refs, tc.secrets)
			}
			for name, want := range tc.plain {
				if got, ok := plain[name]; !ok || got != want {
					t.Errorf("%s = %q (set: %v), want %q", name, got, ok, want)
				}
			}
			for _, name := range tc.absent {
				if _, ok := plain[name]; ok {
					t.Errorf("%s is set to %q, want it unset", name, plain[name])
				}
				if _, ok := refs[name]; ok {
					t.Errorf("%s is set from Secret %s, want it unset", name, refs[name])
				}
			}
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range ctr.VolumeMounts {
				mounts[m.Name] = m
			}
			var names []string
			for _, v := range spec.Volumes {
				names = append(names, v.Name)
				if want, ok := tc.volumes[v.Name]; ok {
					if v.Secret == nil || v.Secret.SecretName != want.secret {
						t.Errorf("volume %s: %+v, want Secret %s", v.Name, v.VolumeSource, want.secret)
						continue
					}
					items := map[string]string{}
					for _, it := range v.Secret.Items {
						items[it.Key] = it.Path
					}
					if !maps.Equal(items, want.items) {
						t.Errorf("volume %s items %v, want %v", v.Name, items, want.items)
					}
					if m := mounts[v.Name]; m.MountPath != want.mount || !m.ReadOnly {
						t.Errorf("volume %s mounted at %q (read-only %v), want %s read-only", v.Name, m.MountPath, m.ReadOnly, want.mount)
					}
				} else if mount, ok := tc.extra[v.Name]; ok {
					if mounts[v.Name].MountPath != mount {
						t.Errorf("extra volume %s mounted at %q, want %q", v.Name, mounts[v.Name].MountPath, mount)
					}
				} else {
					t.Errorf("unexpected volume %s", v.Name)
				}
			}
			want := slices.Sorted(maps.Keys(tc.volumes))
			want = append(want, slices.Sorted(maps.Keys(tc.extra))...)
			sort.Strings(names)
			sort.Strings(want)
			if !slices.Equal(names, want) {
				t.Errorf("volumes %v, want %v", names, want)
			}
		})
	}
}

// TestDefaultsRenderNoSecurityEnv: with the default values the broker gets
// no secret, no token key, no file, no limit and no OTEL_* variable, only
// the trusted proxies' default; the pod has no volume; there is no
// PrometheusRule.
func TestDefaultsRenderNoSecurityEnv(t *testing.T) {
	t.Parallel()
	r := render(t, nil)
	spec := r.Deployments[0].Spec.Template.Spec
	ctr := container(t, spec, "broker")
	if len(ctr.Env) != 0 {
		t.Errorf("env %+v, want none", ctr.Env)
	}
	plain := plainEnv(t, r, ctr)
	for _, name := range append(securityEnv, "TIDINGS_JWT_KEY", "TIDINGS_JWT_PUBLIC_KEY_FILE") {
		if v, ok := plain[name]; ok {
			t.Errorf("%s = %q with the default values, want it unset", name, v)
		}
	}
	if got := plain["TIDINGS_TRUSTED_PROXIES"]; got != privateRanges {
		t.Errorf("TIDINGS_TRUSTED_PROXIES = %q, want the private ranges %q", got, privateRanges)
	}
	if len(spec.Volumes) != 0 || len(ctr.VolumeMounts) != 0 {
		t.Errorf("volumes %+v, mounts %+v: want none", spec.Volumes, ctr.VolumeMounts)
	}
	if len(r.PrometheusRules) != 0 || len(r.Secrets) != 0 {
		t.Errorf("%d PrometheusRules, %d Secrets: want none", len(r.PrometheusRules), len(r.Secrets))
	}
}

// TestLimitsRenderOnlyWhatIsSet: a limit left null or empty renders
// nothing (the broker's default); 0 and large or fractional numbers render
// as the broker's flags parse them.
func TestLimitsRenderOnlyWhatIsSet(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "limits-values.yaml")
	values := "limits:\n  maxSessions: 1000000\n  maxConns: \"\"\n  ipConnRate: 0.5\n  opBurst: 0\n  publishRate: 2500\n"
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string][]string{
		"file":  nil,
		"--set": {"--set", "limits.ipMaxConns=3000000", "--set", "limits.opBurst=null"},
	} {
		r := render(t, []string{f}, extra...)
		cm := named(r.ConfigMaps, fullname).Data
		want := map[string]string{"TIDINGS_MAX_SESSIONS": "1000000", "TIDINGS_IP_CONN_RATE": "0.5", "TIDINGS_OP_BURST": "0",
			"TIDINGS_PUBLISH_RATE": "2500"}
		if extra != nil {
			want["TIDINGS_IP_MAX_CONNS"] = "3000000"
			delete(want, "TIDINGS_OP_BURST")
		}
		got := map[string]string{}
		for _, k := range []string{"TIDINGS_MAX_SESSIONS", "TIDINGS_MAX_CONNS", "TIDINGS_IP_CONN_RATE", "TIDINGS_IP_CONN_BURST",
			"TIDINGS_IP_MAX_CONNS", "TIDINGS_HTTP_IP_MAX_IDLE", "TIDINGS_MAX_SUBSCRIPTIONS", "TIDINGS_OP_RATE", "TIDINGS_OP_BURST",
			"TIDINGS_PUBLISH_RATE"} {
			if v, ok := cm[k]; ok {
				got[k] = v
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: limits\n got %v\nwant %v", name, got, want)
		}
	}
}

// TestJWTSources: each way of giving the token key becomes its variable,
// and a public key at a path of the values' own mount needs no chart
// volume.
func TestJWTSources(t *testing.T) {
	for _, tc := range []struct {
		set        []string
		name, want string
		volume     bool
	}{
		{[]string{"auth.jwt.existingSecret=keys"}, "TIDINGS_JWT_KEY", "keys/jwt-key", false},
		{[]string{"auth.jwt.publicKey.existingSecret=keys"}, "TIDINGS_JWT_PUBLIC_KEY_FILE", "/etc/tidings/jwt/public-key.pem", true},
		{[]string{"auth.jwt.publicKey.path=/etc/keys/jwt.pem", "extraVolumes[0].name=keys", "extraVolumes[0].configMap.name=jwt",
			"extraVolumeMounts[0].name=keys", "extraVolumeMounts[0].mountPath=/etc/keys"}, "TIDINGS_JWT_PUBLIC_KEY_FILE", "/etc/keys/jwt.pem", false},
		{[]string{"auth.jwt.jwksURL=https://auth.example.com/jwks.json"}, "TIDINGS_JWT_JWKS_URL", "https://auth.example.com/jwks.json", false},
	} {
		t.Run(tc.name+" "+tc.want, func(t *testing.T) {
			t.Parallel()
			var extra []string
			for _, s := range tc.set {
				extra = append(extra, "--set", s)
			}
			r := render(t, nil, extra...)
			spec := r.Deployments[0].Spec.Template.Spec
			ctr := container(t, spec, "broker")
			got := plainEnv(t, r, ctr)[tc.name]
			if ref := secretRefs(ctr)[tc.name]; ref != "" {
				got = ref
			}
			if got != tc.want {
				t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
			}
			hasVolume := slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "jwt-public-key" })
			if hasVolume != tc.volume {
				t.Errorf("volume jwt-public-key rendered: %v, want %v", hasVolume, tc.volume)
			}
		})
	}
}

// TestSecurityValuesRefused: combinations the broker would refuse, or that
// would silently do nothing, fail the install with a message naming the
// values.
func TestSecurityValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"two token keys", []string{"auth.jwt.existingSecret=k", "auth.jwt.jwksURL=https://a.example/jwks"},
			"set only one of auth.jwt.existingSecret, auth.jwt.publicKey and auth.jwt.jwksURL (got key,jwks)"},
		{"public key twice", []string{"auth.jwt.publicKey.existingSecret=k", "auth.jwt.publicKey.path=/k.pem"},
			"set auth.jwt.publicKey.existingSecret (mounted by the chart) or auth.jwt.publicKey.path"},
		{"audience without key", []string{"auth.jwt.audience=a"}, "auth.jwt.audience, issuer and leeway need a key"},
		{"Redis password without Redis", []string{"redis.password.existingSecret=p"},
			"redis.password.existingSecret configure the connection to Redis, but no Redis is set"},
		{"Redis TLS on the embedded Redis", []string{"redis.embedded.enabled=true", "redis.tls.enabled=true"},
			"the embedded Redis has no password or TLS"},
		{"sentinel without addresses", []string{"redis.sentinel.masterName=m"}, "redis.sentinel needs both masterName and addresses"},
		{"sentinel and URL", []string{"redis.url=redis://r:6379/0", "redis.sentinel.masterName=m", "redis.sentinel.addresses={s:26379}"},
			"set only one of redis.url, redis.existingSecret, redis.cluster, redis.sentinel and redis.embedded.enabled"},
		{"sentinel password without sentinel", []string{"redis.url=redis://r:6379/0", "redis.sentinel.password.existingSecret=p"},
			"redis.sentinel.username and redis.sentinel.password need redis.sentinel.masterName"},
		{"client certificate without key", []string{"redis.url=redis://r:6379/0", "redis.tls.enabled=true", "redis.tls.existingSecret=t", "redis.tls.certKey=tls.crt"},
			"set redis.tls.certKey and redis.tls.keyKey together"},
		{"client certificate without Secret", []string{"redis.url=redis://r:6379/0", "redis.tls.enabled=true", "redis.tls.certKey=tls.crt", "redis.tls.keyKey=tls.key"},
			"redis.tls.certKey and keyKey name keys of redis.tls.existingSecret, which is empty"},
		{"Redis TLS Secret with nothing to mount", []string{"redis.url=redis://r:6379/0", "redis.tls.enabled=true", "redis.tls.existingSecret=t", "redis.tls.caKey="},
			"neither redis.tls.caKey nor redis.tls.certKey names a key of it"},
		{"Redis TLS files without TLS", []string{"redis.url=redis://r:6379/0", "redis.tls.existingSecret=t"},
			"redis.tls.existingSecret and redis.tls.serverName need TLS: set redis.tls.enabled"},
		{"Redis password twice", []string{"redis.url=redis://u:p@r:6379/0", "redis.password.existingSecret=p"},
			"redis.url carries a password and redis.password.existingSecret gives one too"},
		{"Redis username twice", []string{"redis.url=redis://u@r:6379/0", "redis.username=u"},
			"redis.url carries a username and redis.username gives one too"},
		{"metrics off with a ServiceMonitor", []string{"otel.metricsExporter=none", "serviceMonitor.enabled=true"},
			"otel.metricsExporter none turns /metrics off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantRenderRefused(t, tc.set, tc.want)
		})
	}
}

// TestIngressRoutesOnlyV1: the default Ingress routes /v1/, everything
// clients use, and not /metrics, /healthz or /readyz; the paths stay
// configurable.
func TestIngressRoutesOnlyV1(t *testing.T) {
	t.Parallel()
	r := render(t, nil, "--set", "ingress.enabled=true")
	if len(r.Ingresses) != 1 {
		t.Fatalf("%d Ingresses", len(r.Ingresses))
	}
	paths := r.Ingresses[0].Spec.Rules[0].HTTP.Paths
	for _, p := range []string{"/v1/ws", "/v1/publish", "/v1/publish/batch", "/v1/client.js"} {
		if !slices.ContainsFunc(paths, func(ip networkingv1.HTTPIngressPath) bool { return routes(ip, p) }) {
			t.Errorf("the default Ingress does not route %s", p)
		}
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/demo", "/v1x"} {
		if slices.ContainsFunc(paths, func(ip networkingv1.HTTPIngressPath) bool { return routes(ip, p) }) {
			t.Errorf("the default Ingress routes %s", p)
		}
	}
	r = render(t, nil, "--set", "ingress.enabled=true", "--set", "ingress.hosts[0].host=x.example.com",
		"--set", "ingress.hosts[0].paths[0].path=/", "--set", "ingress.hosts[0].paths[0].pathType=Prefix")
	if p := r.Ingresses[0].Spec.Rules[0].HTTP.Paths[0]; p.Path != "/" || !routes(p, "/metrics") {
		t.Errorf("ingress.hosts[0].paths[0].path=/ rendered %+v", p)
	}
}

// notes renders the chart's NOTES.txt with the values files and --set
// values: helm template does not print notes, so a copy of the chart
// carries them in a ConfigMap.
func notes(t *testing.T, values []string, set ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tidings")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wrapper := `{{- define "notes-under-test" }}` + string(text) + `{{ end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-under-test
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  notes: {{ include "notes-under-test" . | quote }}
`
	if err := os.WriteFile(filepath.Join(dir, "templates", "notes-under-test.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", releaseName, dir, "--namespace", namespace, "--kube-version", kubeVersion,
		"--show-only", "templates/notes-under-test.yaml"}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, stderr, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", set, err, stderr)
	}
	r, err := decode(out)
	if err != nil || len(r.ConfigMaps) != 1 {
		t.Fatalf("notes: %v\n%s", err, out)
	}
	return r.ConfigMaps[0].Data["notes"]
}

// TestNotesWarnAboutIngressWithoutAuth: installed with an Ingress and no
// authentication, the notes warn that sessions are anonymous and that
// nobody outside the pod can publish; with a token key and API keys, or
// without an Ingress, they do not.
func TestNotesWarnAboutIngressWithoutAuth(t *testing.T) {
	const (
		warning   = "WARNING: the broker is exposed through an Ingress"
		anonymous = "sessions are anonymous"
		loopback  = "HTTP publishing is accepted from loopback only"
		metrics   = "/metrics, /healthz and /readyz are public"
	)
	for _, tc := range []struct {
		name       string
		set        []string
		want, not  []string
		wantSubstr string
	}{
		{name: "Ingress, no auth", set: []string{"ingress.enabled=true"}, want: []string{warning, anonymous, loopback}, not: []string{metrics}},
		{name: "Ingress, API keys only", set: []string{"ingress.enabled=true", "auth.apiKeys={publisher-key-1}"},
			want: []string{warning, anonymous}, not: []string{loopback}},
		{name: "Ingress, JWT only", set: []string{"ingress.enabled=true", "auth.jwt.jwksURL=https://auth.example.com/jwks"},
			want: []string{warning, loopback}, not: []string{anonymous}},
		{name: "Ingress, JWT and API keys", set: []string{"ingress.enabled=true", "auth.jwt.existingSecret=jwt",
			"auth.existingSecret=keys"}, not: []string{warning, anonymous, loopback}, wantSubstr: "?token="},
		{name: "Ingress, JWT and an API keys file", set: []string{"ingress.enabled=true",
			"auth.jwt.publicKey.existingSecret=jwt", "auth.apiKeysFile.existingSecret=keys"}, not: []string{warning}},
		{name: "Ingress on /, auth on", set: []string{"ingress.enabled=true", "auth.jwt.existingSecret=jwt", "auth.apiKeys={publisher-key-1}",
			"ingress.hosts[0].host=x.example.com", "ingress.hosts[0].paths[0].path=/", "ingress.hosts[0].paths[0].pathType=Prefix"},
			want: []string{warning, metrics}, not: []string{anonymous, loopback}},
		{name: "no Ingress, no auth", not: []string{warning}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			text := notes(t, nil, tc.set...)
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("notes do not say %q:\n%s", w, text)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(text, n) {
					t.Errorf("notes say %q:\n%s", n, text)
				}
			}
			if tc.wantSubstr != "" && !strings.Contains(text, tc.wantSubstr) {
				t.Errorf("notes do not show %q:\n%s", tc.wantSubstr, text)
			}
		})
	}
}

// TestPrometheusRule: the rules follow their values: thresholds, the
// bounds computed from the limits, disabled rules, extra labels and the
// selector.
func TestPrometheusRule(t *testing.T) {
	alerts := func(r *release) map[string]rule {
		t.Helper()
		if len(r.PrometheusRules) != 1 {
			t.Fatalf("%d PrometheusRules, want 1", len(r.PrometheusRules))
		}
		m := map[string]rule{}
		for _, g := range r.PrometheusRules[0].Spec.Groups {
			for _, rl := range g.Rules {
				m[rl.Alert] = rl
			}
		}
		return m
	}
	all := []string{"TidingsDown", "TidingsPodsNotReady", "TidingsSlowConsumers", "TidingsOutboundBudgetCuts", "TidingsRefusals",
		"TidingsRedisReconnects", "TidingsDeliveryLatencyHigh", "TidingsHistoryEvictions", "TidingsConnectionsNearLimit",
		"TidingsConnectionsRefused", "TidingsSessionsNearLimit"}

	t.Run("secure values", func(t *testing.T) {
		t.Parallel()
		r := render(t, []string{"ci/secure-values.yaml"})
		a := alerts(r)
		if _, ok := a["TidingsHistoryEvictions"]; ok {
			t.Error("TidingsHistoryEvictions rendered while disabled")
		}
		if len(a) != len(all)-1 {
			t.Errorf("%d alerts, want %d", len(a), len(all)-1)
		}
		for _, tc := range []struct{ alert, suffix, severity string }{
			{"TidingsDeliveryLatencyHigh", "> 0.25", "critical"},
			{"TidingsConnectionsNearLimit", "tidings_connections{namespace=\"" + namespace + "\",job=\"" + fullname + "\"}) > 21250", "warning"},
			{"TidingsSessionsNearLimit", ") > 17000", "warning"},
			{"TidingsSlowConsumers", "[5m])) > 1", "warning"},
			{"TidingsDown", " == 0", "critical"},
		} {
			rl := a[tc.alert]
			if !strings.HasSuffix(rl.Expr, tc.suffix) || rl.Labels["severity"] != tc.severity || rl.Labels["team"] != "platform" {
				t.Errorf("%s: expr %q labels %v; want the expr to end with %q, severity %s, team platform", tc.alert, rl.Expr,
					rl.Labels, tc.suffix, tc.severity)
			}
		}
		if rl := a["TidingsDeliveryLatencyHigh"]; rl.For != "5m" {
			t.Errorf("TidingsDeliveryLatencyHigh for %q, want 5m", rl.For)
		}
		if l := r.PrometheusRules[0].Labels; l["release"] != "prometheus" || l["app.kubernetes.io/instance"] != releaseName {
			t.Errorf("PrometheusRule labels %v", l)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		a := alerts(render(t, nil, "--set", "prometheusRule.enabled=true"))
		if got := slices.Sorted(maps.Keys(a)); !slices.Equal(got, slices.Sorted(slices.Values(all))) {
			t.Errorf("alerts %v, want %v", got, all)
		}
		if e := a["TidingsConnectionsNearLimit"].Expr; !strings.Contains(e, "/ process_max_fds{") || !strings.HasSuffix(e, "> 0.85") {
			t.Errorf("without limits.maxConns the connections alert compares with the open-file limit; got %q", e)
		}
		if e := a["TidingsSessionsNearLimit"].Expr; !strings.HasSuffix(e, "> 85000") {
			t.Errorf("without limits.maxSessions the sessions alert uses the broker's 100000; got %q", e)
		}
	})
	t.Run("no session limit, own selector, a threshold", func(t *testing.T) {
		t.Parallel()
		a := alerts(render(t, nil, "--set", "prometheusRule.enabled=true", "--set", "limits.maxSessions=0",
			"--set", `prometheusRule.selector=job="tidings"`, "--set", "prometheusRule.rules.refused.threshold=0.5",
			"--set", "prometheusRule.rateWindow=10m"))
		if _, ok := a["TidingsSessionsNearLimit"]; ok {
			t.Error("TidingsSessionsNearLimit rendered with limits.maxSessions 0 (no limit)")
		}
		if e := a["TidingsRefusals"].Expr; e != `sum by (namespace, reason) (rate(tidings_refused_total{job="tidings"}[10m])) > 0.5` {
			t.Errorf("TidingsRefusals expr %q", e)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		t.Parallel()
		if r := render(t, nil); len(r.PrometheusRules) != 0 {
			t.Error("a PrometheusRule is rendered by default")
		}
	})
}

// TestTLSServedByTheBroker: with tls.existingSecret the probes and the
// ServiceMonitor speak HTTPS, and the notes give wss:// and https:// URLs.
func TestTLSServedByTheBroker(t *testing.T) {
	t.Parallel()
	r := render(t, nil, "--set", "tls.existingSecret=serving", "--set", "serviceMonitor.enabled=true",
		"--set", "serviceMonitor.tlsConfig.insecureSkipVerify=true")
	ctr := container(t, r.Deployments[0].Spec.Template.Spec, "broker")
	for _, p := range []*corev1.Probe{ctr.StartupProbe, ctr.ReadinessProbe, ctr.LivenessProbe} {
		if p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe of %s: scheme %q, want HTTPS", p.HTTPGet.Path, p.HTTPGet.Scheme)
		}
	}
	ep := r.ServiceMonitors[0].Spec.Endpoints[0]
	if ep.Scheme != "https" || ep.TLSConfig["insecureSkipVerify"] != true {
		t.Errorf("ServiceMonitor scheme %q tlsConfig %v", ep.Scheme, ep.TLSConfig)
	}
	text := notes(t, nil, "tls.existingSecret=serving")
	if !strings.Contains(text, "wss://"+fullname+"."+namespace+".svc:8080/v1/ws") {
		t.Errorf("notes give no wss:// URL:\n%s", text)
	}
}

// TestDocsSecureExample renders the worked example of docs/kubernetes.md
// ("Example: authentication, an Ingress and a password-protected Redis"):
// it must install with no extraEnv, take every secret from a Secret, and
// leave the notes without a warning.
func TestDocsSecureExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n# secure-values.yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/kubernetes.md has no ```yaml block starting with # secure-values.yaml")
	}
	f := filepath.Join(t.TempDir(), "docs-secure-values.yaml")
	if err := os.WriteFile(f, m[1], 0o644); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m[1]), "extraEnv") {
		t.Error("the example uses extraEnv")
	}
	r := render(t, []string{f})
	ctr := container(t, r.Deployments[0].Spec.Template.Spec, "broker")
	want := map[string]string{
		"TIDINGS_JWT_KEY":        "tidings-jwt/jwt-key",
		"TIDINGS_REDIS_PASSWORD": "tidings-redis/redis-password",
		"TIDINGS_REDIS":          fullname + "/redis-url",
	}
	if got := secretRefs(ctr); !maps.Equal(got, want) {
		t.Errorf("variables from Secrets:\n got %v\nwant %v", got, want)
	}
	plain := plainEnv(t, r, ctr)
	for name, v := range map[string]string{"TIDINGS_API_KEYS_FILE": "/etc/tidings/api-keys/api-keys.json",
		"TIDINGS_REDIS_TLS": "true", "TIDINGS_REDIS_TLS_CA": "/etc/tidings/redis-tls/ca.crt", "TIDINGS_REDIS_USERNAME": "tidings"} {
		if plain[name] != v {
			t.Errorf("%s = %q, want %q", name, plain[name], v)
		}
	}
	c := chartCase{replicas: 3, redis: "url", jwt: "key", existingSecrets: []string{"tidings-jwt", "tidings-api-keys", "tidings-redis",
		"tidings-redis-ca"}}
	checkMountedFiles(t, c, r.Deployments[0].Spec.Template.Spec, ctr, named(r.ConfigMaps, fullname), brokerEnv(t, r, c, ctr))
	if len(r.PrometheusRules) != 1 || len(r.Ingresses) != 1 {
		t.Errorf("%d PrometheusRules, %d Ingresses: want one of each", len(r.PrometheusRules), len(r.Ingresses))
	}
	text := notes(t, []string{f})
	if strings.Contains(text, "WARNING") || !strings.Contains(text, "wss://tidings.example.com/v1/ws?token=") {
		t.Errorf("notes of the example:\n%s", text)
	}
}
