{{/* The chart's name, truncated to what a DNS label allows. */}}
{{- define "ember.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: the release name, plus the chart's when it lacks it. */}}
{{- define "ember.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "ember.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ember.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ember.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ember.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ember.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ember.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ember.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret and key holding the database URL. */}}
{{- define "ember.databaseSecret" -}}
{{- default (printf "%s-database" (include "ember.fullname" .)) .Values.database.existingSecret }}
{{- end }}
{{- define "ember.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* The public FHIR base: baseURL, else the ingress host, else the Service. */}}
{{- define "ember.baseURL" -}}
{{- if .Values.baseURL }}
{{- .Values.baseURL }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s://%s/fhir" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- else }}
{{- printf "http://%s.%s.svc:%v/fhir" (include "ember.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}

{{/* More than one pod may run at once. */}}
{{- define "ember.scaled" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Refuse values that would deploy something broken. */}}
{{- define "ember.validate" -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- fail "set database.url or database.existingSecret: the image has no PostgreSQL of its own" }}
{{- end }}
{{- if and (include "ember.scaled" .) (not .Values.dicom.blobURL) (not .Values.persistence.existingClaim) }}
{{- fail "more than one pod needs dicom.blobURL (an S3 bucket) or a shared persistence.existingClaim: DICOM files written by one pod must be readable by all" }}
{{- end }}
{{- if and (eq .Values.auth "smart") (not (hasPrefix "https://" (include "ember.baseURL" .))) }}
{{- fail "auth smart needs an https FHIR base (its token issuer is derived from it): set baseURL, or ingress.enabled with ingress.tls.enabled" }}
{{- end }}
{{- if and .Values.dicom.dimse.enabled (not .Values.dicom.dimse.aeAllow) }}
{{- fail "dicom.dimse.enabled needs dicom.dimse.aeAllow: the calling AE titles allowed (e.g. \"PACS1:store+find\", or \"*\" for any)" }}
{{- end }}
{{- end }}
