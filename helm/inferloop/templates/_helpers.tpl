{{/* Names and labels. */}}
{{- define "inferloop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "inferloop.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "worker"). */}}
{{- define "inferloop.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "inferloop.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "inferloop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (include "inferloop.fullname" .) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{/* Secret-backed settings (SASL credentials) and the TLS CA file; the rest comes from the ConfigMap. */}}
{{- define "inferloop.secretEnv" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
- name: INFERLOOP_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with a SASL_* security protocol" .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: INFERLOOP_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.tls.existingSecret }}
- name: INFERLOOP_KAFKA__SSL_CAFILE
  value: /etc/inferloop/kafka-tls/{{ .Values.kafka.tls.caKey }}
{{- end }}
{{- end -}}

{{- define "inferloop.tlsVolumeMount" -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/inferloop/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.triton.tls.existingSecret }}
- name: triton-tls
  mountPath: /etc/inferloop/triton-tls
  readOnly: true
{{- if .Values.triton.tls.mutual }}
- name: triton-client-tls
  mountPath: /etc/inferloop/triton-client-tls
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "inferloop.tlsVolume" -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- with .Values.triton.tls.existingSecret }}
- name: triton-tls
  secret:
    secretName: {{ . }}
    items: [{key: ca.crt, path: ca.crt}]  # clients get the CA only, never the server's key
{{- if $.Values.triton.tls.mutual }}
- name: triton-client-tls
  secret:
    secretName: {{ required "triton.tls.clientSecret is required when triton.tls.mutual is true" $.Values.triton.tls.clientSecret }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "inferloop.modelRepositoryClaim" -}}
{{ default (printf "%s-models" (include "inferloop.fullname" .)) .Values.modelRepository.persistence.existingClaim }}
{{- end -}}

{{/* Checks that fail the rendering with a clear message. */}}
{{- define "inferloop.validate" -}}
{{- if gt (int .Values.worker.replicas) (int .Values.topics.partitions) -}}
{{- fail (printf "worker.replicas (%d) is more than topics.partitions (%d): extra workers would sit idle" (int .Values.worker.replicas) (int .Values.topics.partitions)) -}}
{{- end -}}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.maxReplicas) (int .Values.topics.partitions)) -}}
{{- fail (printf "worker.autoscaling.maxReplicas (%d) is more than topics.partitions (%d)" (int .Values.worker.autoscaling.maxReplicas) (int .Values.topics.partitions)) -}}
{{- end -}}
{{- if not (has .Values.kafka.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol %s is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- end -}}
