{{/* Names, labels and the operator's RBAC rules, shared by the templates. */}}

{{- define "bgjobs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bgjobs.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "bgjobs.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "bgjobs.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "bgjobs.serviceAccountName" -}}
{{- default (include "bgjobs.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "bgjobs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "bgjobs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bgjobs
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "operator"). */}}
{{- define "bgjobs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bgjobs.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "bgjobs.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "bgjobs.metricsServiceName" -}}
{{- printf "%s-metrics" (include "bgjobs.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bgjobs.redisName" -}}
{{- printf "%s-redis" (include "bgjobs.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Redis the operator (and through it every worker) uses; empty for none. Workers
run in other namespaces, so the bundled one is addressed by its namespaced DNS name. */}}
{{- define "bgjobs.redisUrl" -}}
{{- if and .Values.redis.bundled.enabled .Values.redis.url }}
{{- fail "redis: set either redis.url (an external Redis) or redis.bundled.enabled, not both" }}
{{- end }}
{{- if regexMatch "^[a-z]+://[^/@]*:[^/@]*@" .Values.redis.url }}
{{- fail "redis.url: put the password in a Secret and name it in redis.existingSecret (a password in the URL would be written into every Job)" }}
{{- end }}
{{- if .Values.redis.bundled.enabled }}
{{- printf "redis://%s.%s.svc:6379/0" (include "bgjobs.redisName" .) .Release.Namespace }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{- define "bgjobs.namespaced" -}}
{{- if eq .Values.rbac.mode "namespaced" }}
{{- if not .Values.watchNamespaces }}
{{- fail "rbac.mode=namespaced needs watchNamespaces: the namespaces the operator watches" }}
{{- end }}
{{- "true" }}
{{- end }}
{{- end }}

{{/*
What the operator does, verb by verb (operator/bgjobs_operator/kubeapi.py, controllers/,
handlers.py); nothing else, in particular no Secrets:
  - watches BackgroundJobs, JobSchedules, DeadLetters; creates runs of schedules and
    replays (BackgroundJobs) and DeadLetters; deletes runs beyond a schedule's history;
    patch is kept for kopf, which may strip a stale finalizer of its own;
  - writes their status subresource;
  - sets ownerReferences with blockOwnerDeletion on Jobs, CronJobs and schedule runs,
    which needs update on the owner's finalizers subresource;
  - creates, watches and deletes (cancel) Jobs; patches them to resume a queued one;
  - creates, watches and patches CronJobs (a schedule's CronJob follows its spec);
  - reads a Job's pods for the termination message when Redis is down;
  - posts Events.
*/}}
{{- define "bgjobs.rules" -}}
- apiGroups: [bgjobs.dev]
  resources: [backgroundjobs, jobschedules, deadletters, jobworkflows]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [bgjobs.dev]
  resources: [jobqueues]
  verbs: [get, list, watch]
- apiGroups: [bgjobs.dev]
  resources: [backgroundjobs/status, jobschedules/status, deadletters/status, jobworkflows/status, jobqueues/status]
  verbs: [get, patch]
- apiGroups: [bgjobs.dev]
  resources: [backgroundjobs/finalizers, jobschedules/finalizers, jobworkflows/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* {exports: 2, default: 50} -> "default=50,exports=2" (--queue-limits) */}}
{{- define "bgjobs.queueLimits" -}}
{{- $items := list }}
{{- range $queue, $limit := . }}
{{- $items = append $items (printf "%s=%v" $queue $limit) }}
{{- end }}
{{- join "," $items }}
{{- end }}

{{- define "bgjobs.dashboardName" -}}
{{- printf "%s-dashboard" (include "bgjobs.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bgjobs.dashboardServiceAccountName" -}}
{{- default (include "bgjobs.dashboardName" .) .Values.dashboard.serviceAccount.name }}
{{- end }}

{{- define "bgjobs.dashboardImage" -}}
{{- if .Values.dashboard.image.repository }}
{{- printf "%s:%s" .Values.dashboard.image.repository (default (default .Chart.AppVersion .Values.image.tag) .Values.dashboard.image.tag) }}
{{- else if .Values.dashboard.image.tag }}
{{- printf "%s:%s" .Values.image.repository .Values.dashboard.image.tag }}
{{- else }}
{{- include "bgjobs.image" . }}
{{- end }}
{{- end }}
