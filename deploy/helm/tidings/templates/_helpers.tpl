{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "tidings.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the
release name already contains it. 56 characters at most, so that suffixed
names ("-headless", "-redis") still fit in a DNS label.
*/}}
{{- define "tidings.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels of the broker pods: stable for the life of a release. */}}
{{- define "tidings.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidings.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{/* Labels common to every object of the release. */}}
{{- define "tidings.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "tidings.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the broker's objects. */}}
{{- define "tidings.labels" -}}
{{ include "tidings.commonLabels" . }}
app.kubernetes.io/component: broker
{{- end }}

{{/* Selector labels of the embedded Redis pod. */}}
{{- define "tidings.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidings.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* Labels of the embedded Redis objects. */}}
{{- define "tidings.redis.labels" -}}
{{ include "tidings.commonLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/* Name of the embedded Redis objects; its Service's DNS name. */}}
{{- define "tidings.redis.fullname" -}}
{{- printf "%s-redis" (include "tidings.fullname" .) }}
{{- end }}

{{/* The broker's ServiceAccount. */}}
{{- define "tidings.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidings.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The broker image reference: repository, then @digest or :tag. */}}
{{- define "tidings.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Which Redis the broker uses: "url", "existingSecret", "cluster", "embedded",
or "" for none (the in-memory store).
*/}}
{{- define "tidings.redisMode" -}}
{{- $r := .Values.redis }}
{{- if $r.embedded.enabled }}embedded
{{- else if $r.url }}url
{{- else if $r.existingSecret }}existingSecret
{{- else if $r.cluster }}cluster
{{- end }}
{{- end }}

{{/* Whether more than one broker pod may run: "true" or "". */}}
{{- define "tidings.multiNode" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
Checks of combinations that values.schema.json cannot express, with a
message that says what to change. Included by the Deployment.
*/}}
{{- define "tidings.validate" -}}
{{- $r := .Values.redis }}
{{- $set := list }}
{{- if $r.url }}{{ $set = append $set "redis.url" }}{{ end }}
{{- if $r.existingSecret }}{{ $set = append $set "redis.existingSecret" }}{{ end }}
{{- if $r.cluster }}{{ $set = append $set "redis.cluster" }}{{ end }}
{{- if $r.embedded.enabled }}{{ $set = append $set "redis.embedded.enabled" }}{{ end }}
{{- if gt (len $set) 1 }}
{{- fail (printf "tidings: set only one of redis.url, redis.existingSecret, redis.cluster and redis.embedded.enabled (got %s)" (join ", " $set)) }}
{{- end }}
{{- if and (include "tidings.multiNode" .) (eq (len $set) 0) }}
{{- fail "tidings: replicaCount > 1 or autoscaling.enabled needs Redis: set redis.url, redis.existingSecret, redis.cluster or redis.embedded.enabled. Without Redis every pod has its own in-memory store and clients of different pods would not see each other's messages." }}
{{- end }}
{{- if and .Values.auth.apiKeys .Values.auth.existingSecret }}
{{- fail "tidings: set auth.apiKeys or auth.existingSecret, not both" }}
{{- end }}
{{- with .Values.autoscaling }}
{{- if .enabled }}
{{- if gt (int .minReplicas) (int .maxReplicas) }}
{{- fail (printf "tidings: autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int .minReplicas) (int .maxReplicas)) }}
{{- end }}
{{- if and (eq (int .targetCPUUtilizationPercentage) 0) (not .sessionsPerPod.enabled) }}
{{- fail "tidings: autoscaling.enabled needs a metric: autoscaling.targetCPUUtilizationPercentage above 0 or autoscaling.sessionsPerPod.enabled" }}
{{- end }}
{{- if and (gt (int .targetCPUUtilizationPercentage) 0) (not (dig "requests" "cpu" "" $.Values.resources)) }}
{{- fail "tidings: autoscaling on CPU needs resources.requests.cpu: utilization is a percentage of the request" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the Secret the chart creates for API keys and the Redis URL. */}}
{{- define "tidings.secretName" -}}
{{- include "tidings.fullname" . }}
{{- end }}

{{/* Whether the chart creates its Secret: "true" or "". */}}
{{- define "tidings.createSecret" -}}
{{- if or .Values.auth.apiKeys .Values.redis.url }}true{{ end }}
{{- end }}
