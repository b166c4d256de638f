{{/* Names follow the usual Helm conventions so that two releases never collide on cluster-scoped objects. */}}

{{- define "canaryd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "canaryd.fullname" -}}
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

{{- define "canaryd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "canaryd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canaryd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "canaryd.labels" -}}
helm.sh/chart: {{ include "canaryd.chart" . }}
{{ include "canaryd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "canaryd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "canaryd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: set the name of an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "canaryd.leaseName" -}}
{{- default (include "canaryd.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "canaryd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The checks ConfigMap's content; its hash goes on the pod template so that a change restarts canaryd, which
validates every check template at start-up (a bad one stops the new pod, not the running leader).
*/}}
{{- define "canaryd.checksFile" -}}
{{- $checks := list }}
{{- range .Values.analysis.checks }}
{{- $c := deepCopy . }}
{{- /* --set passes decimals as strings; canaryd's checks file wants numbers. */}}
{{- range $bound := list "min" "max" }}
{{- if hasKey $c $bound }}{{ $_ := set $c $bound (float64 (get $c $bound)) }}{{ end }}
{{- end }}
{{- $checks = append $checks $c }}
{{- end }}
{{- toYaml (dict "checks" $checks) }}
{{- end }}

{{/* Prometheus headers as canaryd's --prometheus-headers value: name=value,… in a stable order. */}}
{{- define "canaryd.promHeaders" -}}
{{- $pairs := list }}
{{- range $k := keys .Values.prometheus.headers | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $k (index $.Values.prometheus.headers $k)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Pod label selector of canaryd's own pods, for NetworkPolicy, PDB and monitors. */}}
{{- define "canaryd.podSelector" -}}
matchLabels:
  {{- include "canaryd.selectorLabels" . | nindent 2 }}
{{- end }}
