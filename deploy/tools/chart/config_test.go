package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// configFile is where the chart mounts the broker's config file.
const configFile = "/etc/tidings/config/config.yaml"

// mountConfigFile writes the config file of the release r, which the pod
// finds at path (TIDINGS_CONFIG), into a temporary directory and returns
// its path there.
func mountConfigFile(t *testing.T, r *release, path string) string {
	t.Helper()
	cm := named(r.ConfigMaps, fullname+"-config")
	if cm == nil || path != configFile {
		t.Fatalf("TIDINGS_CONFIG %q: want %s from ConfigMap %s-config", path, configFile, fullname)
	}
	local := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(local, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	return local
}

// TestConfigValue: the config value becomes the broker's config file, in
// a ConfigMap of its own mounted read-only (no subPath) and named by
// TIDINGS_CONFIG; the chart leaves out the variables of the settings the
// file sets, which would win over it; without the value there is no file.
func TestConfigValue(t *testing.T) {
	t.Parallel()
	r := render(t, []string{"ci/single-node-values.yaml"})
	cm := named(r.ConfigMaps, fullname)
	if got := cm.Data["TIDINGS_CONFIG"]; got != configFile {
		t.Errorf("TIDINGS_CONFIG %q, want %s", got, configFile)
	}
	if v, ok := cm.Data["TIDINGS_HISTORY_SIZE"]; ok {
		t.Errorf("TIDINGS_HISTORY_SIZE %q is set, and would win over the file's history-size", v)
	}
	if cm.Data["TIDINGS_QUEUE_SIZE"] == "" {
		t.Error("TIDINGS_QUEUE_SIZE, which the file does not set, is missing")
	}
	file := named(r.ConfigMaps, fullname+"-config")
	if file == nil {
		t.Fatalf("no ConfigMap %s-config", fullname)
	}
	var content struct {
		HistorySize int `json:"history-size"`
		Namespaces  []struct {
			Pattern       string `json:"pattern"`
			ClientPublish string `json:"client_publish"`
		} `json:"namespaces"`
	}
	if err := yaml.Unmarshal([]byte(file.Data["config.yaml"]), &content); err != nil {
		t.Fatalf("config.yaml: %v\n%s", err, file.Data["config.yaml"])
	}
	if content.HistorySize != 200 || len(content.Namespaces) != 3 || content.Namespaces[1].Pattern != "prices.>" ||
		content.Namespaces[1].ClientPublish != "none" {
		t.Errorf("config.yaml holds %+v", content)
	}
	spec := r.Deployments[0].Spec.Template.Spec
	ctr := container(t, spec, "broker")
	var mount *corev1.VolumeMount
	for i, m := range ctr.VolumeMounts {
		if m.MountPath == filepath.Dir(configFile) {
			mount = &ctr.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly || mount.SubPath != "" {
		t.Fatalf("the config file's mount: %+v, want %s read-only without subPath", mount, filepath.Dir(configFile))
	}
	for _, v := range spec.Volumes {
		if v.Name != mount.Name {
			continue
		}
		if v.ConfigMap == nil || v.ConfigMap.Name != fullname+"-config" || len(v.ConfigMap.Items) != 1 ||
			v.ConfigMap.Items[0].Key != "config.yaml" || v.ConfigMap.Items[0].Path != filepath.Base(configFile) {
			t.Errorf("volume %s: %+v, want config.yaml of ConfigMap %s-config", v.Name, v.VolumeSource, fullname)
		}
	}
	// A change of the file rolls the pods.
	other := render(t, []string{"ci/single-node-values.yaml"}, "--set", "config.history-size=300")
	key := "checksum/config-file"
	if a, b := r.Deployments[0].Spec.Template.Annotations[key], other.Deployments[0].Spec.Template.Annotations[key]; a == "" || a == b {
		t.Errorf("%s %q and %q: want it to change with the file", key, a, b)
	}

	d := render(t, nil)
	if named(d.ConfigMaps, fullname+"-config") != nil || named(d.ConfigMaps, fullname).Data["TIDINGS_CONFIG"] != "" {
		t.Error("without the config value the chart renders a config file")
	}
}

// TestConfigValueRefusesSecrets: a secret in the config value would be
// shown by its ConfigMap: rendering fails and says where it belongs.
func TestConfigValueRefusesSecrets(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"jwt-key", "redis-password", "api-keys"} {
		// The schema refuses them first; the template refuses them too,
		// should the schema be skipped (helm --skip-schema-validation).
		_, stderr, err := helm(t, templateArgs(nil, "--skip-schema-validation", "--set", "config."+key+"=s3cret-value")...)
		if err == nil || !strings.Contains(stderr, "config."+key+" is a secret") {
			t.Errorf("config.%s: err %v, stderr %q; want a refusal naming it", key, err, stderr)
		}
	}
}
