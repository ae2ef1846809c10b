{{/* Labels on every object: kustomize's (app.kubernetes.io/part-of) plus Helm's own. */}}
{{- define "ferry.labels" -}}
app.kubernetes.io/part-of: ferry
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The node plugin's pods. */}}
{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: ferry
app.kubernetes.io/component: node
{{- end -}}

{{- define "ferry.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{/* Every Secret a class names, for the read-only Role. */}}
{{- define "ferry.secretNames" -}}
{{- $names := list -}}
{{- if and .Values.storageClass.create .Values.storageClass.secretName -}}
{{- $names = append $names .Values.storageClass.secretName -}}
{{- end -}}
{{- if and .Values.restoreStorageClass.create .Values.restoreStorageClass.secretName -}}
{{- $names = append $names .Values.restoreStorageClass.secretName -}}
{{- end -}}
{{- range .Values.snapshotClasses -}}
{{- if .secretName -}}
{{- $names = append $names .secretName -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* Repositories the agents search for snapshots their catalog does not know:
agent.lookupRepositories, then the primary repository of each snapshot class. */}}
{{- define "ferry.lookupRepositories" -}}
{{- $repos := list -}}
{{- range .Values.agent.lookupRepositories -}}
{{- $repos = append $repos . -}}
{{- end -}}
{{- range .Values.snapshotClasses -}}
{{- with (get (.parameters | default dict) "ferry.csi.dev/repository") -}}
{{- $repos = append $repos . -}}
{{- end -}}
{{- end -}}
{{- $repos | uniq | join ", " -}}
{{- end -}}

{{- define "ferry.sidecarSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
