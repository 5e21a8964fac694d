{{/*
The chart's name: app.kubernetes.io/name.
*/}}
{{- define "persistence-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: the release name if it contains the chart's name, else
<release>-<chart>; 63 characters at most (a DNS label), and short enough for
the "-certificates" suffix of the in-cluster Secret and Lease.
*/}}
{{- define "persistence-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "persistence-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object: kustomize's (name, part-of) and Helm's.
*/}}
{{- define "persistence-webhook.labels" -}}
app.kubernetes.io/name: {{ include "persistence-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: polyaxon-persistence
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "persistence-webhook.chart" . }}
{{- end }}

{{/*
The selector of the webhook's pods (Deployment, Service, PDB, anti-affinity).
*/}}
{{- define "persistence-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "persistence-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "persistence-webhook.configMapName" -}}
{{ include "persistence-webhook.fullname" . }}-config
{{- end }}

{{- define "persistence-webhook.tlsSecretName" -}}
{{ include "persistence-webhook.fullname" . }}-tls
{{- end }}

{{/* The in-cluster mode's Secret and Lease (one name for both, as `serve`'s defaults). */}}
{{- define "persistence-webhook.certificatesName" -}}
{{ include "persistence-webhook.fullname" . }}-certificates
{{- end }}

{{/*
A memory quantity (resources.limits.memory) in bytes; "" if it is not one.
*/}}
{{- define "persistence-webhook.bytes" -}}
{{- $q := toString . }}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $unit := trimPrefix $m $q }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if and $m (hasKey $units $unit) }}
{{- mulf $m (get $units $unit) | floor | int64 }}
{{- end }}
{{- end }}

{{/*
The written memory bound of the bound flags, in bytes (docs/src/reference/hardening.md,
"Memory bound"):
  8 MiB base
  + (maxConnections + maxMetricsConnections) x 512 KiB (ours 320, the kernel's 192)
  + maxBodyBufferBytes + 8 MiB
  + 6 x maxBodyBytes
  + maxInFlight x (6 x 64 KiB + 1.5 x maxPatchBytes)
*/}}
{{- define "persistence-webhook.memoryBound" -}}
{{- $b := .Values.bounds }}
{{- $mib := 1048576 }}
{{- $connections := mul (add (int64 $b.maxConnections) (int64 $b.maxMetricsConnections)) 524288 }}
{{- $bodies := add (int64 $b.maxBodyBufferBytes) (mul 8 $mib) }}
{{- $parse := mul 6 (int64 $b.maxBodyBytes) }}
{{- $reviews := mul (int64 $b.maxInFlight) (add 393216 (div (mul 3 (int64 $b.maxPatchBytes)) 2)) }}
{{- add (mul 8 $mib) $connections $bodies $parse $reviews }}
{{- end }}

{{/*
Refuses to render what would not work; each message names the values to change.
*/}}
{{- define "persistence-webhook.validate" -}}
{{- $b := .Values.bounds }}
{{- $bound := include "persistence-webhook.memoryBound" . | int64 }}
{{- $limit := "" }}
{{- with .Values.resources }}{{ with .limits }}{{ with .memory }}{{ $limit = . }}{{ end }}{{ end }}{{ end }}
{{- if $limit }}
{{- $bytes := include "persistence-webhook.bytes" $limit }}
{{- if not $bytes }}
{{- fail (printf "resources.limits.memory: %q is not a memory quantity (e.g. 256Mi)" (toString $limit)) }}
{{- end }}
{{- if lt ($bytes | int64) $bound }}
{{- $need := div (add $bound 1048575) 1048576 }}
{{- fail (printf "resources.limits.memory (%s) is below the webhook's memory bound of %d MiB for bounds.maxConnections=%d, bounds.maxMetricsConnections=%d, bounds.maxBodyBufferBytes=%d, bounds.maxBodyBytes=%d, bounds.maxInFlight=%d, bounds.maxPatchBytes=%d (docs/src/reference/hardening.md, \"Memory bound\"): raise resources.limits.memory to at least %dMi (the default keeps a fifth more as margin), or lower those bounds" (toString $limit) $need (int64 $b.maxConnections) (int64 $b.maxMetricsConnections) (int64 $b.maxBodyBufferBytes) (int64 $b.maxBodyBytes) (int64 $b.maxInFlight) (int64 $b.maxPatchBytes) $need) }}
{{- end }}
{{- end }}
{{- if ge (int .Values.server.requestTimeoutSeconds) (int .Values.webhook.timeoutSeconds) }}
{{- fail (printf "server.requestTimeoutSeconds (%d) must be below webhook.timeoutSeconds (%d): the webhook answers 503 at its own deadline before the API server gives up; lower the first or raise the second" (int .Values.server.requestTimeoutSeconds) (int .Values.webhook.timeoutSeconds)) }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add .Values.server.shutdownDelaySeconds .Values.server.drainTimeoutSeconds | int) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above server.shutdownDelaySeconds + server.drainTimeoutSeconds (%d + %d), so in-flight reviews finish on a rollout" (int .Values.terminationGracePeriodSeconds) (int .Values.server.shutdownDelaySeconds) (int .Values.server.drainTimeoutSeconds)) }}
{{- end }}
{{- if gt (int $b.maxConnectionsPerPeer) (int $b.maxConnections) }}
{{- fail (printf "bounds.maxConnectionsPerPeer (%d) must not exceed bounds.maxConnections (%d)" (int $b.maxConnectionsPerPeer) (int $b.maxConnections)) }}
{{- end }}
{{- $sm := .Values.certificates.selfManaged }}
{{- if and (eq .Values.certificates.mode "self-managed") (ne (empty $sm.tlsCrt) (empty $sm.tlsKey)) }}
{{- fail "certificates.selfManaged.tlsCrt and certificates.selfManaged.tlsKey go together: set both (the chart makes the Secret) or neither (you create the Secret)" }}
{{- end }}
{{- if .Values.hybrid.enabled }}
{{- $policies := .Values.hybrid.policies | default "" }}
{{- if not (contains "MutatingAdmissionPolicy" $policies) }}
{{- fail "hybrid.enabled=true needs hybrid.policies, the policies for this release's config: persistence-webhook policy --config persistence.yaml --hybrid --webhook-namespace <release namespace> > policies.yaml, then --set-file hybrid.policies=policies.yaml (without them the narrowed webhook would leave most pods without their stores)" }}
{{- end }}
{{- if not (contains "hybrid-not-webhook-pods" $policies) }}
{{- fail "hybrid.policies was generated without --hybrid: those policies also mutate the pods the webhook admits (every pod would be mutated twice); regenerate with persistence-webhook policy --config persistence.yaml --hybrid" }}
{{- end }}
{{- $leaves := false }}
{{- range regexSplit "(?m)^---[ \t]*$" $policies -1 }}
{{- $doc := fromYaml . }}
{{- if eq (toString $doc.kind) "MutatingAdmissionPolicyBinding" }}
{{- range (((($doc.spec).matchResources).namespaceSelector).matchExpressions) }}
{{- if and (eq (toString .key) "kubernetes.io/metadata.name") (eq (toString .operator) "NotIn") (has $.Release.Namespace .values) }}
{{- $leaves = true }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $leaves }}
{{- fail (printf "hybrid.policies leave alone another namespace than the release's (%s): regenerate with persistence-webhook policy --config persistence.yaml --hybrid --webhook-namespace %s" .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- end }}
{{- end }}
