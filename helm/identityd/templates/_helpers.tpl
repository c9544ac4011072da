{{/* Names and labels, as `helm create` makes them. */}}
{{- define "identityd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "identityd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Release and chart labels, without a component. */}}
{{- define "identityd.instanceLabels" -}}
app.kubernetes.io/name: {{ include "identityd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "identityd.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "identityd.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The server's pods. The component keeps the migration job's pods out of the
     Services, the PodDisruptionBudget and the NetworkPolicy. */}}
{{- define "identityd.selectorLabels" -}}
{{ include "identityd.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "identityd.labels" -}}
{{ include "identityd.commonLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "identityd.migrationLabels" -}}
{{ include "identityd.commonLabels" . }}
app.kubernetes.io/component: migrations
{{- end }}

{{/* The migration job's pods. */}}
{{- define "identityd.migrationSelectorLabels" -}}
{{ include "identityd.instanceLabels" . }}
app.kubernetes.io/component: migrations
{{- end }}

{{/* The full name with a suffix, within the 63 characters of a name or label value. */}}
{{- define "identityd.suffixed" -}}
{{- $suffix := printf "-%s" (index . 1) }}
{{- printf "%s%s" (include "identityd.fullname" (index . 0) | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "identityd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The service account the server runs as; the migration job uses it only when it
     existed before the release (a hook runs before the chart's own account exists). */}}
{{- define "identityd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "identityd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL, the master key and the bootstrap token. */}}
{{- define "identityd.secretName" -}}
{{- default (include "identityd.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{/* Rules across values that the schema cannot state; a failure stops the render. */}}
{{- define "identityd.checkValues" -}}
{{- if not .Values.existingSecret.name }}
{{- if not .Values.database.url }}
{{- fail "database.url is required (postgres://USER:PASSWORD@HOST:5432/DB), or name your own Secret in existingSecret.name" }}
{{- end }}
{{- if not .Values.masterKey }}
{{- fail "masterKey is required (`openssl rand -base64 32`; every replica shares it), or name your own Secret in existingSecret.name" }}
{{- end }}
{{- end }}
{{- if and .Values.existingSecret.name .Values.bootstrap.apiToken }}
{{- fail "bootstrap.apiToken is not used with existingSecret.name: put the token in that Secret, under existingSecret.keys.bootstrapApiToken" }}
{{- end }}
{{- if ge (int .Values.preStopSleepSeconds) (int .Values.terminationGracePeriodSeconds) }}
{{- fail "preStopSleepSeconds must be shorter than terminationGracePeriodSeconds, which also covers draining" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName, a kubernetes.io/tls Secret" }}
{{- end }}
{{- if and .Values.tls.clientCASecretName (not .Values.tls.enabled) }}
{{- fail "tls.clientCASecretName (mTLS) needs tls.enabled" }}
{{- end }}
{{- end }}

{{/* The first admin's API token: given, kept from the installed Secret, or generated. */}}
{{- define "identityd.bootstrapApiToken" -}}
{{- if .Values.bootstrap.apiToken }}
{{- .Values.bootstrap.apiToken }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "identityd.fullname" .) }}
{{- $kept := "" }}
{{- if $existing }}{{- $kept = index $existing.data "bootstrap-api-token" | default "" | b64dec }}{{- end }}
{{- $kept | default (printf "idt_api_%s" (randAlphaNum 43)) }}
{{- end }}
{{- end }}

{{/* The key of a value in the Secret: ours are fixed, an existing Secret's are
     configured. Call with (list . "masterKey" "master-key"). */}}
{{- define "identityd.secretKey" -}}
{{- $root := index . 0 }}
{{- if $root.Values.existingSecret.name }}
{{- index $root.Values.existingSecret.keys (index . 1) }}
{{- else }}
{{- index . 2 }}
{{- end }}
{{- end }}

{{/* Database URL as a container env entry, from Secret `secret`. */}}
{{- define "identityd.databaseUrlEnv" -}}
- name: IDENTITYD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ include "identityd.secretKey" (list .root "databaseUrl" "database-url") }}
{{- end }}

{{/* Pod and container security, shared by the server and the migration job. */}}
{{- define "identityd.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Egress to DNS and the database: all the server and the migration job need. */}}
{{- define "identityd.databaseEgress" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- ports:
    - {port: {{ .Values.networkPolicy.database.port | int64 }}, protocol: TCP}
  {{- with .Values.networkPolicy.database.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
