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

{{/* Scheduling of one component's pods (its values: nodeSelector, tolerations, affinity,
topologySpreadConstraints, priorityClassName), as pod-spec fields. */}}
{{- define "inferloop.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Checks that fail the rendering with a clear message (values.schema.json checks types, enums and keys). */}}
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
{{- if and (eq .Values.model.device "gpu") (ne .Values.model.backend "onnxruntime") -}}
{{- fail "model.device gpu needs model.backend onnxruntime (the python backend runs on CPUs)" -}}
{{- end -}}
{{- if and (eq .Values.model.device "gpu") (lt (int .Values.triton.gpus) 1) -}}
{{- fail "model.device gpu needs triton.gpus of at least 1" -}}
{{- end -}}
{{- if and (gt (int .Values.triton.gpus) 0) (ne .Values.model.device "gpu") -}}
{{- fail (printf "triton.gpus is %d but model.device is %s: the GPUs would sit idle" (int .Values.triton.gpus) .Values.model.device) -}}
{{- end -}}
{{- if and (eq .Values.model.backend "python") (eq .Values.triton.image.repository "nvcr.io/nvidia/tritonserver") -}}
{{- fail "model.backend python needs onnxruntime in Triton's python environment, which the stock nvcr.io/nvidia/tritonserver image lacks: build infra/docker/triton.Dockerfile and set triton.image, or use model.backend onnxruntime" -}}
{{- end -}}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas)) -}}
{{- fail (printf "worker.autoscaling.minReplicas (%d) is more than maxReplicas (%d)" (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.model.tensorrt.enabled (ne .Values.model.device "gpu") -}}
{{- fail "model.tensorrt.enabled needs model.device gpu" -}}
{{- end -}}

{{- end -}}

{{/* Every non-secret setting, as INFERLOOP_* variables: the ConfigMap's data, and the env of the topics hook
(which runs before the ConfigMap exists). */}}
{{- define "inferloop.envData" -}}
INFERLOOP_HOME: /tmp/inferloop
INFERLOOP_CACHE_DIR: /tmp/inferloop-cache
INFERLOOP_LOG_FORMAT: {{ .Values.logFormat | quote }}
INFERLOOP_KAFKA__BOOTSTRAP_SERVERS: {{ .Values.kafka.bootstrapServers | quote }}
INFERLOOP_KAFKA__SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
INFERLOOP_KAFKA__SASL_MECHANISM: {{ .Values.kafka.saslMechanism | quote }}
{{- end }}
# topics are created by the chart's hook Job (topics.createJob) or the cluster's tooling, never by the apps
INFERLOOP_KAFKA__CREATE_TOPICS: "false"
INFERLOOP_KAFKA__REPLICATION_FACTOR: {{ .Values.topics.replicationFactor | quote }}
{{- with .Values.topics.minInsyncReplicas }}
INFERLOOP_KAFKA__MIN_INSYNC_REPLICAS: {{ . | quote }}
{{- end }}
INFERLOOP_TRITON__HOST: {{ include "inferloop.fullname" . }}-triton
INFERLOOP_TRITON__GRPC_PORT: {{ .Values.triton.ports.grpc | quote }}
INFERLOOP_TRITON__METRICS_PORT: {{ .Values.triton.ports.metrics | quote }}
INFERLOOP_TRITON__MODEL_REPOSITORY: {{ .Values.modelRepository.mountPath | quote }}
{{- if .Values.triton.tls.existingSecret }}
INFERLOOP_TRITON__TLS: "true"
INFERLOOP_TRITON__TLS_CA_FILE: /etc/inferloop/triton-tls/ca.crt
{{- if .Values.triton.tls.mutual }}
INFERLOOP_TRITON__TLS_CERT_FILE: /etc/inferloop/triton-client-tls/tls.crt
INFERLOOP_TRITON__TLS_KEY_FILE: /etc/inferloop/triton-client-tls/tls.key
{{- end }}
{{- end }}
{{- with .Values.worker.imageUriRoots }}
INFERLOOP_STREAMS__IMAGE_URI_ROOTS: {{ toJson . | quote }}
{{- end }}
INFERLOOP_MODEL__NAME: {{ .Values.model.name | quote }}
INFERLOOP_MODEL__MAX_BATCH_SIZE: {{ .Values.model.maxBatchSize | quote }}
INFERLOOP_MODEL__INSTANCE_COUNT: {{ .Values.model.instanceCount | quote }}
INFERLOOP_MODEL__MAX_QUEUE_DELAY_US: {{ .Values.model.maxQueueDelayUs | quote }}
INFERLOOP_MODEL__BACKEND: {{ .Values.model.backend | quote }}
INFERLOOP_MODEL__DEVICE: {{ .Values.model.device | quote }}
INFERLOOP_MODEL__TENSORRT: {{ .Values.model.tensorrt.enabled | quote }}
INFERLOOP_MODEL__TENSORRT_PRECISION: {{ .Values.model.tensorrt.precision | quote }}
INFERLOOP_STREAMS__APP_ID: {{ .Values.worker.appId | quote }}
INFERLOOP_STREAMS__IMAGES_TOPIC: {{ .Values.topics.images | quote }}
INFERLOOP_STREAMS__PREDICTIONS_TOPIC: {{ .Values.topics.predictions | quote }}
INFERLOOP_STREAMS__DEAD_LETTER_TOPIC: {{ .Values.topics.deadLetters | quote }}
INFERLOOP_STREAMS__SHADOW_PREDICTIONS_TOPIC: {{ .Values.topics.shadowPredictions | quote }}
INFERLOOP_MODEL__PROMOTIONS_TOPIC: {{ .Values.topics.promotions | quote }}
INFERLOOP_STREAMS__PARTITIONS: {{ .Values.topics.partitions | quote }}
INFERLOOP_STREAMS__MAX_BATCH: {{ .Values.worker.maxBatch | quote }}
INFERLOOP_STREAMS__BATCH_WITHIN_MS: {{ .Values.worker.batchWithinMs | quote }}
INFERLOOP_STREAMS__METRICS_PORT: {{ .Values.worker.metricsPort | quote }}
INFERLOOP_STREAMS__MEMORY_BUDGET_MB: {{ .Values.worker.memoryBudgetMb | quote }}
INFERLOOP_FEEDBACK__TOPIC: {{ .Values.topics.feedback | quote }}
INFERLOOP_FEEDBACK__TRUSTED_TOPIC: {{ .Values.topics.trustedFeedback | quote }}
INFERLOOP_FEEDBACK__TRAINING_LOG_TOPIC: {{ .Values.topics.trainingLog | quote }}
INFERLOOP_FEEDBACK__APP_ID: {{ .Values.joiner.appId | quote }}
INFERLOOP_FEEDBACK__RETENTION_S: {{ .Values.joiner.retentionS | quote }}
INFERLOOP_FEEDBACK__WAIT_S: {{ .Values.joiner.waitS | quote }}
INFERLOOP_FEEDBACK__METRICS_PORT: {{ .Values.joiner.metricsPort | quote }}
INFERLOOP_TRAINER__MIN_NEW_LABELS: {{ .Values.trainer.minNewLabels | quote }}
INFERLOOP_TRAINER__TOLERANCE: {{ .Values.trainer.tolerance | quote }}
INFERLOOP_TRAINER__BEST_TOLERANCE: {{ .Values.trainer.bestTolerance | quote }}
INFERLOOP_TRAINER__PROMOTION_MIN_LABELS: {{ .Values.trainer.promotionMinLabels | quote }}
INFERLOOP_TRAINER__SERVING_VERSIONS: {{ .Values.trainer.servingVersions | quote }}
INFERLOOP_TRAINER__KEEP_VERSIONS: {{ .Values.trainer.keepVersions | quote }}
INFERLOOP_TRAINER__INTERVAL_S: {{ .Values.trainer.intervalS | quote }}
INFERLOOP_TRAINER__METRICS_PORT: {{ .Values.trainer.metricsPort | quote }}
INFERLOOP_TRAINER__LOAD_TIMEOUT_S: {{ .Values.trainer.loadTimeoutS | quote }}
{{- end -}}
