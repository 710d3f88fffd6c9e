{{- define "redistreams.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "redistreams.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "redistreams.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "redistreams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "redistreams.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "redistreams.redisSecret" -}}
{{- default (include "redistreams.fullname" .) .Values.redis.existingSecret -}}
{{- end -}}

{{/* Leader election, in the release namespace: LEADER_ELECTION_RULES of redistreams.controller.rbac (a test checks). */}}
{{- define "redistreams.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* The operator's permissions; the same rules as redistreams.controller.rbac (a test checks). */}}
{{- define "redistreams.rules" -}}
- apiGroups: [redistreams.dev]
  resources: [topics, consumergroups]
  verbs: [list, watch, patch]
- apiGroups: [redistreams.dev]
  resources: [topics/status, consumergroups/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.readSecrets }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, watch]
{{- end }}
{{- end -}}
