{{/*
The rules are what canaryd's code calls (kube/: informers, writer, routers, event recorder), nothing more.
RBAC cannot match names by pattern, so the write verbs on Deployments and Services are namespace-wide; canaryd
itself creates only objects named after an opted-in Deployment foo (foo-canary, foo-stable, the apex foo when
missing, the split foo), updates or deletes only those carrying its canaryd.io/managed-by label, and writes
only spec.paused and canaryd.io/* annotations of the user's Deployment, by patch. No Secrets, no Pods, no
ConfigMaps. Informers on resources the API server serves must be allowed to list and watch, or canaryd never
becomes ready: that is why the HTTPRoute and ServiceProfile rules are not optional. API discovery needs no rule: the built-in system:discovery role grants it to every identity.
*/}}

{{- define "canaryd.rules" -}}
# The user's Deployments: watched (opted-in label), read live before a write, patched (spec.paused and
# canaryd.io/* annotations); foo-canary Deployments: created, scaled (update) and deleted.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch, create, update, delete]
# foo-canary and the canaryd Services carry an ownerReference to foo with blockOwnerDeletion; clusters that
# enforce owner-reference permissions (OwnerReferencesPermissionEnforcement, e.g. OpenShift) ask for this.
- apiGroups: [apps]
  resources: [deployments/finalizers]
  verbs: [update]
# Revision hashes of the stable and canary ReplicaSets (read from the cache only).
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list, watch]
# foo-stable and foo-canary (and the apex foo when the user has none).
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, update, delete]
# Ready endpoints behind each backend before it gets weight.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# The split itself.
- apiGroups: [split.smi-spec.io]
  resources: [trafficsplits]
  verbs: [list, watch, create, update, delete]
# The HTTPRoute router: Gateway API or Linkerd's own, whichever the API server serves (get explains a
# name clash with a route canaryd did not create).
- apiGroups: [gateway.networking.k8s.io, policy.linkerd.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, update, delete]
# A ServiceProfile on an apex silently overrides an HTTPRoute split in Linkerd: canaryd watches them (when
# the CRD is served) to refuse such a split with a clear Event. Read only.
- apiGroups: [linkerd.io]
  resources: [serviceprofiles]
  verbs: [list, watch]
# Every decision a user can see is an Event on their Deployment; repeats are aggregated by patch.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}
