import { createHash } from 'node:crypto'
import YAML from 'yaml'
import type { Resources } from '../resources.ts'
import type { TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'

export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  [field: string]: unknown
}

/** Group subjects are realm-qualified so that one tenant's "admins" never matches another's. */
export const groupSubject = (tenant: string, group: string) => `dflare:${tenant}:${group}`

/** Every object of one tenant namespace: the namespace first, so an apply in order works. */
export function namespaceObjects(
  spec: TenantSpec,
  r: Resources,
  ns: Resources['namespaces'][number],
): KubeObject[] {
  const labels = { 'app.kubernetes.io/managed-by': 'dflare', 'dflare.dev/tenant': r.tenant }
  const meta = (name: string) => ({ name, namespace: ns.name, labels })
  const all = { podSelector: {} }
  const objects: KubeObject[] = [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: ns.name,
        labels: {
          ...labels,
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/enforce-version': 'latest',
          'pod-security.kubernetes.io/audit': 'restricted',
          'pod-security.kubernetes.io/warn': 'restricted',
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'ResourceQuota',
      metadata: meta('tenant-quota'),
      spec: {
        hard: {
          'requests.nvidia.com/gpu': String(ns.spec.gpus),
          'requests.cpu': ns.spec.cpu,
          'limits.cpu': ns.spec.cpu,
          'requests.memory': ns.spec.memory,
          'limits.memory': ns.spec.memory,
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'LimitRange',
      metadata: meta('tenant-limits'),
      spec: {
        limits: [
          {
            type: 'Container',
            default: { cpu: '1', memory: '1Gi' },
            defaultRequest: { cpu: '100m', memory: '128Mi' },
            max: { cpu: ns.spec.cpu, memory: ns.spec.memory },
          },
        ],
      },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('default-deny'),
      spec: { ...all, policyTypes: ['Ingress', 'Egress'] },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('allow-same-namespace'),
      spec: {
        ...all,
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ podSelector: {} }] }],
        egress: [{ to: [{ podSelector: {} }] }],
      },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('allow-dns'),
      spec: {
        ...all,
        policyTypes: ['Egress'],
        egress: [
          {
            to: [
              {
                namespaceSelector: {
                  matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' },
                },
                podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
              },
            ],
            ports: [
              { protocol: 'UDP', port: 53 },
              { protocol: 'TCP', port: 53 },
            ],
          },
        ],
      },
    },
  ]
  for (const g of spec.kubernetes.groups) {
    const subject = groupSubject(r.tenant, g.group)
    const suffix = createHash('sha256').update(subject).digest('hex').slice(0, 10)
    objects.push({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(`dflare-${g.role}-${suffix}`),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: g.role },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: subject }],
    })
  }
  return objects
}

export function clusterObjects(spec: TenantSpec, r: Resources, cluster: string): KubeObject[] {
  return r.namespaces
    .filter((n) => n.cluster === cluster)
    .flatMap((ns) => namespaceObjects(spec, r, ns))
}

/** One multi-document manifest per cluster, usable with `kubectl apply --server-side -f`. */
export function renderKubernetes(spec: TenantSpec, r: Resources): DesiredObject[] {
  return spec.kubernetes.clusters.map((cluster) => ({
    driver: 'kubernetes' as const,
    id: `${cluster}.yaml`,
    content: clusterObjects(spec, r, cluster)
      .map((o) => YAML.stringify(o))
      .join('---\n'),
  }))
}
