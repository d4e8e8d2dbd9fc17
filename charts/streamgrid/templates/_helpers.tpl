{{- define "streamgrid.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "streamgrid.labels" -}}
app.kubernetes.io/name: streamgrid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streamgrid.selector" -}}
app.kubernetes.io/name: streamgrid
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamgrid.image" -}}
{{ .root.Values.image.registry }}/streamgrid-{{ .component }}:{{ index (.root.Values.image.tags | default dict) .component | default .root.Values.image.tag }}
{{- end -}}

{{- define "streamgrid.s3Secret" -}}
{{- if .Values.s3.existingSecret -}}{{ .Values.s3.existingSecret }}{{- else -}}{{ include "streamgrid.fullname" . }}-s3{{- end -}}
{{- end -}}

{{- define "streamgrid.s3Endpoint" -}}
{{- /* Qualified by namespace: capture pods run in the streams' namespaces too. */ -}}
{{- if .Values.minio.enabled -}}http://{{ include "streamgrid.fullname" . }}-minio.{{ .Release.Namespace }}.svc:9000{{- else -}}{{ .Values.s3.endpoint }}{{- end -}}
{{- end -}}

{{- define "streamgrid.storeUrl" -}}
s3://{{ .Values.s3.bucket }}/{{ .Values.s3.prefix }}
{{- end -}}

{{- define "streamgrid.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "streamgrid.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{- define "streamgrid.storeEnv" -}}
- {name: STREAMGRID_STORE_URL, value: {{ include "streamgrid.storeUrl" . | quote }}}
- {name: STREAMGRID_S3_ENDPOINT_URL, value: {{ include "streamgrid.s3Endpoint" . | quote }}}
- {name: STREAMGRID_S3_REGION, value: {{ .Values.s3.region | quote }}}
- name: STREAMGRID_S3_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ include "streamgrid.s3Secret" . }}, key: accessKeyId}}
- name: STREAMGRID_S3_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "streamgrid.s3Secret" . }}, key: secretAccessKey}}
- {name: STREAMGRID_LOG_LEVEL, value: {{ .Values.logLevel | quote }}}
- {name: PYTHONDONTWRITEBYTECODE, value: "1"}
- {name: HOME, value: /tmp}
{{- end -}}

{{- define "streamgrid.gatewayHosts" -}}
{{- $service := printf "%s-gateway" (include "streamgrid.fullname" .) -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.%s" $service $ns .Values.gateway.clusterDomain) -}}
{{- join "," (concat $names .Values.gateway.allowedHosts) -}}
{{- end -}}

{{- /* A component's replicas spread over nodes: preferred (the scheduler
tries other nodes first, a single node still runs them all), required (never
two on one node), or none. */ -}}
{{- define "streamgrid.antiAffinity" -}}
{{- $selector := dict "app.kubernetes.io/name" "streamgrid" "app.kubernetes.io/instance" .root.Release.Name "app.kubernetes.io/component" .component -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" $selector) -}}
{{- if eq .mode "required" -}}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - {{- toYaml $term | nindent 8 }}
{{- else if eq .mode "preferred" -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm: {{- toYaml $term | nindent 10 }}
{{- end -}}
{{- end -}}
