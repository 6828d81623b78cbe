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
Which Redis the broker uses: "url", "existingSecret", "cluster", "sentinel",
"embedded", or "" for none (the in-memory store).
*/}}
{{- define "tidings.redisMode" -}}
{{- $r := .Values.redis }}
{{- if $r.embedded.enabled }}embedded
{{- else if $r.url }}url
{{- else if $r.existingSecret }}existingSecret
{{- else if $r.cluster }}cluster
{{- else if or $r.sentinel.masterName $r.sentinel.addresses }}sentinel
{{- end }}
{{- end }}

{{/*
The JWT sources configured, comma-separated: "key", "publicKey", "jwks";
empty when sessions are anonymous.
*/}}
{{- define "tidings.jwtSources" -}}
{{- $j := .Values.auth.jwt }}
{{- $s := list }}
{{- if $j.existingSecret }}{{ $s = append $s "key" }}{{ end }}
{{- if or $j.publicKey.existingSecret $j.publicKey.path }}{{ $s = append $s "publicKey" }}{{ end }}
{{- if $j.jwksURL }}{{ $s = append $s "jwks" }}{{ end }}
{{- join "," $s }}
{{- end }}

{{/* Whether publishers have API keys (so HTTP publishing works beyond loopback): "true" or "". */}}
{{- define "tidings.apiKeysEnabled" -}}
{{- if or .Values.auth.apiKeys .Values.auth.existingSecret .Values.auth.apiKeysFile.existingSecret }}true{{ end }}
{{- end }}

{{/* Whether the broker serves TLS itself: "true" or "". */}}
{{- define "tidings.tls" -}}
{{- if .Values.tls.existingSecret }}true{{ end }}
{{- end }}

{{/*
Where the chart mounts the files it takes from Secrets. The files get fixed
names, whatever their keys in the Secrets.
*/}}
{{- define "tidings.paths" -}}
jwtPublicKey: /etc/tidings/jwt/public-key.pem
apiKeysFile: /etc/tidings/api-keys/api-keys.json
tlsCert: /etc/tidings/tls/tls.crt
tlsKey: /etc/tidings/tls/tls.key
redisTLSCA: /etc/tidings/redis-tls/ca.crt
redisTLSCert: /etc/tidings/redis-tls/tls.crt
redisTLSKey: /etc/tidings/redis-tls/tls.key
configFile: /etc/tidings/config/config.yaml
{{- end }}

{{/*
Whether an optional value is set: not null and not "". 0 and false are set.
*/}}
{{- define "tidings.isSet" -}}
{{- if not (or (kindIs "invalid" .) (and (kindIs "string" .) (eq . ""))) }}true{{ end }}
{{- end }}

{{/*
A number as the broker's flags parse it: whole numbers without exponent or
decimals (values files give every number as a float), others as they are.
*/}}
{{- define "tidings.number" -}}
{{- if eq (float64 .) (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ float64 . }}{{ end }}
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
{{- range $key := list "jwt-key" "redis" "redis-password" "redis-sentinel-password" "api-keys" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "tidings: config.%s is a secret, which a ConfigMap would show to anyone who may read it: give it through the chart's Secret values (auth.*, redis.*) instead" $key) }}
{{- end }}
{{- end }}
{{- $r := .Values.redis }}
{{- $set := list }}
{{- if $r.url }}{{ $set = append $set "redis.url" }}{{ end }}
{{- if $r.existingSecret }}{{ $set = append $set "redis.existingSecret" }}{{ end }}
{{- if $r.cluster }}{{ $set = append $set "redis.cluster" }}{{ end }}
{{- if or $r.sentinel.masterName $r.sentinel.addresses }}{{ $set = append $set "redis.sentinel" }}{{ end }}
{{- if $r.embedded.enabled }}{{ $set = append $set "redis.embedded.enabled" }}{{ end }}
{{- if gt (len $set) 1 }}
{{- fail (printf "tidings: set only one of redis.url, redis.existingSecret, redis.cluster, redis.sentinel and redis.embedded.enabled (got %s)" (join ", " $set)) }}
{{- end }}
{{- if and (include "tidings.multiNode" .) (eq (len $set) 0) }}
{{- fail "tidings: replicaCount > 1 or autoscaling.enabled needs Redis: set redis.url, redis.existingSecret, redis.cluster, redis.sentinel or redis.embedded.enabled. Without Redis every pod has its own in-memory store and clients of different pods would not see each other's messages." }}
{{- end }}
{{- if and (or $r.sentinel.masterName $r.sentinel.addresses) (not (and $r.sentinel.masterName $r.sentinel.addresses)) }}
{{- fail "tidings: redis.sentinel needs both masterName and addresses" }}
{{- end }}
{{- $redisAuth := list }}
{{- if $r.username }}{{ $redisAuth = append $redisAuth "redis.username" }}{{ end }}
{{- if $r.password.existingSecret }}{{ $redisAuth = append $redisAuth "redis.password.existingSecret" }}{{ end }}
{{- if $r.tls.enabled }}{{ $redisAuth = append $redisAuth "redis.tls.enabled" }}{{ end }}
{{- if $r.tls.serverName }}{{ $redisAuth = append $redisAuth "redis.tls.serverName" }}{{ end }}
{{- if $r.tls.existingSecret }}{{ $redisAuth = append $redisAuth "redis.tls.existingSecret" }}{{ end }}
{{- if and $redisAuth (eq (len $set) 0) }}
{{- fail (printf "tidings: %s configure the connection to Redis, but no Redis is set (redis.url, redis.existingSecret, redis.cluster or redis.sentinel)" (join ", " $redisAuth)) }}
{{- end }}
{{- if and $redisAuth $r.embedded.enabled }}
{{- fail (printf "tidings: the embedded Redis has no password or TLS; %s apply to an external Redis only" (join ", " $redisAuth)) }}
{{- end }}
{{- if and (or $r.sentinel.username $r.sentinel.password.existingSecret) (not $r.sentinel.masterName) }}
{{- fail "tidings: redis.sentinel.username and redis.sentinel.password need redis.sentinel.masterName and redis.sentinel.addresses" }}
{{- end }}
{{- if and (or $r.tls.existingSecret $r.tls.serverName) (not $r.tls.enabled) (not (hasPrefix "rediss://" $r.url)) }}
{{- fail "tidings: redis.tls.existingSecret and redis.tls.serverName need TLS: set redis.tls.enabled (a rediss:// redis.url turns it on too)" }}
{{- end }}
{{- if $r.url }}
{{- $userinfo := (urlParse $r.url).userinfo }}
{{- if and (contains ":" $userinfo) $r.password.existingSecret }}
{{- fail "tidings: redis.url carries a password and redis.password.existingSecret gives one too: give it once, better in the Secret than in the URL" }}
{{- end }}
{{- if and (first (splitList ":" $userinfo)) $r.username }}
{{- fail "tidings: redis.url carries a username and redis.username gives one too: give it once" }}
{{- end }}
{{- end }}
{{- with $r.tls }}
{{- if ne (empty .certKey) (empty .keyKey) }}
{{- fail "tidings: set redis.tls.certKey and redis.tls.keyKey together (the client certificate and its key)" }}
{{- end }}
{{- if and .certKey (not .existingSecret) }}
{{- fail "tidings: redis.tls.certKey and keyKey name keys of redis.tls.existingSecret, which is empty" }}
{{- end }}
{{- if and .existingSecret (not (or .caKey .certKey)) }}
{{- fail "tidings: redis.tls.existingSecret is set but neither redis.tls.caKey nor redis.tls.certKey names a key of it" }}
{{- end }}
{{- end }}
{{- if and .Values.auth.apiKeys .Values.auth.existingSecret }}
{{- fail "tidings: set auth.apiKeys or auth.existingSecret, not both" }}
{{- end }}
{{- $j := .Values.auth.jwt }}
{{- if and $j.publicKey.existingSecret $j.publicKey.path }}
{{- fail "tidings: set auth.jwt.publicKey.existingSecret (mounted by the chart) or auth.jwt.publicKey.path (a file you mount), not both" }}
{{- end }}
{{- $jwt := include "tidings.jwtSources" . }}
{{- if gt (len (splitList "," $jwt)) 1 }}
{{- fail (printf "tidings: set only one of auth.jwt.existingSecret, auth.jwt.publicKey and auth.jwt.jwksURL (got %s): the broker verifies tokens with exactly one key source" $jwt) }}
{{- end }}
{{- if and (not $jwt) (or $j.audience $j.issuer $j.leeway) }}
{{- fail "tidings: auth.jwt.audience, issuer and leeway need a key: auth.jwt.existingSecret, auth.jwt.publicKey or auth.jwt.jwksURL" }}
{{- end }}
{{- if and (has "none" (splitList "," (.Values.otel.metricsExporter | replace " " ""))) (or .Values.serviceMonitor.enabled .Values.prometheusRule.enabled) }}
{{- fail "tidings: otel.metricsExporter none turns /metrics off, which serviceMonitor.enabled and prometheusRule.enabled need" }}
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
