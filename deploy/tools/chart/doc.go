// Package chart tests the Helm chart in deploy/helm/tidings: it renders the
// chart with helm template for the default values and every
// ci/*-values.yaml, decodes the manifests strictly into the k8s.io/api types
// and asserts what the chart promises (probes, preStop, grace period,
// hardening, rollout, disruption budget, Redis wiring, scaling, exposure),
// that bad values are refused, and that the environment it gives the broker
// names the broker's real flags. `make helm-test` runs it with the pinned helm.
package chart
