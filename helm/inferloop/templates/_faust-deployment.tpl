{{/* A Faust app's Deployment (the worker, the joiner): include with (dict "root" $ "name" "worker" "values" .Values.worker "autoscaled" bool). */}}
{{- define "inferloop.faustDeployment" -}}
{{- $ := .root -}}
{{- $name := .name -}}
{{- $c := .values -}}
{{- $autoscaled := .autoscaled -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "inferloop.fullname" $ }}-{{ $name }}
  labels:
    {{- include "inferloop.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ $c.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "inferloop.selectorLabels" (dict "ctx" $ "component" $name) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "inferloop.selectorLabels" (dict "ctx" $ "component" $name) | nindent 8 }}
      annotations:
        {{- $checksum := dict "checksum/env" (include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum) }}
        {{- toYaml (merge $checksum (default dict $c.podAnnotations)) | nindent 8 }}
    spec:
      serviceAccountName: {{ include "inferloop.serviceAccountName" $ }}
      {{- include "inferloop.scheduling" $c | nindent 6 }}
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 60
      containers:
        - name: {{ $name }}
          image: {{ include "inferloop.image" $ }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args: [{{ $name | quote }}]
          envFrom:
            - configMapRef:
                name: {{ include "inferloop.fullname" $ }}-env
          env:
            {{- include "inferloop.secretEnv" $ | nindent 12 }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $c.metricsPort }}
          readinessProbe:
            httpGet: {path: /metrics, port: metrics}
            periodSeconds: 10
          livenessProbe:
            httpGet: {path: /metrics, port: metrics}
            initialDelaySeconds: 30
            periodSeconds: 20
            failureThreshold: 6
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $.Values.securityContext | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- include "inferloop.tlsVolumeMount" $ | nindent 12 }}
      volumes:
        - {name: tmp, emptyDir: {}}
        {{- include "inferloop.tlsVolume" $ | nindent 8 }}
{{- end -}}
