{{/* canaryd's command-line flags from the values, shared by the Deployment and the helm test Pod. */}}
{{- define "canaryd.flags" -}}
{{- $d := .Values.defaults -}}
- --listen=:{{ int64 .Values.metrics.port }}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
- --workers={{ int64 .Values.workers }}
- --kube-api-qps={{ .Values.kubeAPI.qps }}
- --kube-api-burst={{ int64 .Values.kubeAPI.burst }}
{{- with .Values.watchNamespaces }}
- --namespaces={{ join "," . }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
- --leader-elect=true
- --leader-election-namespace={{ .Release.Namespace }}
- --leader-election-id={{ include "canaryd.leaseName" . }}
- --leader-election-lease={{ .Values.leaderElection.leaseDuration }}
{{- end }}
- --prometheus-url={{ .Values.prometheus.url }}
- --prometheus-timeout={{ .Values.prometheus.timeout }}
- --scrape-interval={{ .Values.prometheus.scrapeInterval }}
{{- with .Values.prometheus.headers }}
- --prometheus-headers={{ include "canaryd.promHeaders" $ }}
{{- end }}
{{- if .Values.prometheus.bearerToken.existingSecret }}
- --prometheus-bearer-token-file=/var/run/secrets/canaryd/prometheus-token/{{ .Values.prometheus.bearerToken.key }}
{{- end }}
{{- if .Values.prometheus.basicAuth.username }}
- --prometheus-username={{ .Values.prometheus.basicAuth.username }}
- --prometheus-password-file=/var/run/secrets/canaryd/prometheus-password/{{ .Values.prometheus.basicAuth.passwordKey }}
{{- end }}
{{- if or .Values.prometheus.tls.caConfigMap .Values.prometheus.tls.caSecret }}
- --prometheus-ca-file=/etc/canaryd/prometheus-ca/{{ .Values.prometheus.tls.caKey }}
{{- end }}
{{- if .Values.prometheus.tls.insecureSkipVerify }}
- --prometheus-insecure-skip-verify=true
{{- end }}
- --analysis-period={{ .Values.analysis.period }}
- --analysis-timeout={{ .Values.analysis.timeout }}
{{- if .Values.analysis.checks }}
- --checks-file=/etc/canaryd/checks/checks.yaml
{{- end }}
- --smi-version={{ .Values.smiVersion }}
{{- with .Values.httpRoute.version }}
- --httproute-version={{ . }}
{{- end }}
{{- if .Values.httpRoute.requireAccepted }}
- --httproute-require-accepted=true
{{- end }}
- --hook-timeout={{ .Values.hookTimeout }}
{{- if .Values.notifications.receivers }}
- --notify-config=/etc/canaryd/notify-config/notify.yaml
{{- end }}
- --default-steps={{ $d.steps }}
- --default-interval={{ $d.interval }}
- --default-max-failures={{ int64 $d.maxFailures }}
- --default-min-success-rate={{ $d.minSuccessRate }}
- --default-max-latency-p99={{ $d.maxLatencyP99 }}
- --default-min-requests={{ int64 $d.minRequests }}
- --default-progress-deadline={{ $d.progressDeadline }}
- --default-on-inconclusive={{ $d.onInconclusive }}
- --default-router={{ $d.router }}
- --default-manual-promotion={{ $d.manualPromotion }}
{{- with $d.window }}
- --default-window={{ . }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* Files canaryd reads: custom checks and Prometheus credentials. */}}
{{- define "canaryd.volumeMounts" -}}
{{- if .Values.analysis.checks }}
- name: checks
  mountPath: /etc/canaryd/checks
  readOnly: true
{{- end }}
{{- if .Values.prometheus.bearerToken.existingSecret }}
- name: prometheus-token
  mountPath: /var/run/secrets/canaryd/prometheus-token
  readOnly: true
{{- end }}
{{- if .Values.prometheus.basicAuth.existingSecret }}
- name: prometheus-password
  mountPath: /var/run/secrets/canaryd/prometheus-password
  readOnly: true
{{- end }}
{{- if or .Values.prometheus.tls.caConfigMap .Values.prometheus.tls.caSecret }}
- name: prometheus-ca
  mountPath: /etc/canaryd/prometheus-ca
  readOnly: true
{{- end }}
{{- if .Values.notifications.receivers }}
- name: notify-config
  mountPath: /etc/canaryd/notify-config
  readOnly: true
- name: notify-secrets
  mountPath: /etc/canaryd/notify
  readOnly: true
{{- end }}
{{- end }}

{{- define "canaryd.volumes" -}}
{{- if .Values.analysis.checks }}
- name: checks
  configMap:
    name: {{ include "canaryd.fullname" . }}-checks
{{- end }}
{{- with .Values.prometheus.bearerToken.existingSecret }}
- name: prometheus-token
  secret:
    secretName: {{ . }}
    items:
      - key: {{ $.Values.prometheus.bearerToken.key }}
        path: {{ $.Values.prometheus.bearerToken.key }}
{{- end }}
{{- with .Values.prometheus.basicAuth.existingSecret }}
- name: prometheus-password
  secret:
    secretName: {{ . }}
    items:
      - key: {{ $.Values.prometheus.basicAuth.passwordKey }}
        path: {{ $.Values.prometheus.basicAuth.passwordKey }}
{{- end }}
{{- with .Values.prometheus.tls.caConfigMap }}
- name: prometheus-ca
  configMap:
    name: {{ . }}
    items:
      - key: {{ $.Values.prometheus.tls.caKey }}
        path: {{ $.Values.prometheus.tls.caKey }}
{{- end }}
{{- with .Values.prometheus.tls.caSecret }}
- name: prometheus-ca
  secret:
    secretName: {{ . }}
    items:
      - key: {{ $.Values.prometheus.tls.caKey }}
        path: {{ $.Values.prometheus.tls.caKey }}
{{- end }}
{{- if .Values.notifications.receivers }}
- name: notify-config
  configMap:
    name: {{ include "canaryd.fullname" . }}-notify
- name: notify-secrets
  secret:
    secretName: {{ .Values.notifications.existingSecret }}
    items:
      {{- range $key := include "canaryd.notifyKeys" . | splitList "," }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- end }}
{{- end }}

{{/* The Secret keys the notification receivers read, each once. */}}
{{- define "canaryd.notifyKeys" -}}
{{- $keys := list }}
{{- range .Values.notifications.receivers }}
{{- $keys = append $keys .urlKey }}
{{- with .tokenKey }}{{ $keys = append $keys . }}{{ end }}
{{- end }}
{{- $keys | uniq | join "," }}
{{- end }}

{{/* canaryd's --notify-config: the receivers, their secrets as files of the mounted Secret. */}}
{{- define "canaryd.notifyFile" -}}
{{- $n := .Values.notifications }}
{{- $receivers := list }}
{{- range $n.receivers }}
{{- $r := dict "name" .name "type" .type "urlFile" (printf "/etc/canaryd/notify/%s" .urlKey) }}
{{- with .tokenKey }}{{ $_ := set $r "tokenFile" (printf "/etc/canaryd/notify/%s" .) }}{{ end }}
{{- with .events }}{{ $_ := set $r "events" . }}{{ end }}
{{- with .namespaces }}{{ $_ := set $r "namespaces" . }}{{ end }}
{{- $receivers = append $receivers $r }}
{{- end }}
{{- toYaml (dict "receivers" $receivers "queueSize" (int64 $n.queueSize) "timeout" $n.timeout "maxAttempts" (int64 $n.maxAttempts) "retryInitial" $n.retryInitial "retryMax" $n.retryMax) }}
{{- end }}
