import type { Resources } from '../resources.ts'
import type { TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'
import { hexPkey } from './infiniband.ts'

/**
 * The storage access control map: which tenant networks, hosts and identities may mount which
 * export, read-write or read-only. It is one of two independent storage layers; the other is the
 * storage partition (PKey), and either alone must deny another tenant.
 */
export function storageAcl(spec: TenantSpec, r: Resources) {
  const cidrOf = new Map(r.networks.map((n) => [n.name, n.cidr]))
  return {
    tenant: r.tenant,
    specVersion: r.specVersion,
    storagePkey: hexPkey(r.pkeys.storage),
    exports: spec.storage.exports.map((e) => ({
      name: e.name,
      path: e.path,
      access: e.access,
      networks: e.networks.map((n) => cidrOf.get(n)!),
      hosts: e.hosts,
      identities: e.identities,
    })),
  }
}

/** NFS `/etc/exports` lines for the NFS exports (object buckets are enforced from the ACL map). */
export function renderNfsExports(spec: TenantSpec, r: Resources): string {
  const lines = [`# Dflare tenant ${r.tenant} (spec version ${r.specVersion})`]
  for (const e of storageAcl(spec, r).exports) {
    if (!e.path.startsWith('/')) continue
    const opts = `${e.access},sync,root_squash,no_subtree_check,sec=sys`
    const clients = [...e.networks, ...e.hosts].map((c) => `${c}(${opts})`)
    if (clients.length > 0) lines.push(`${e.path} ${clients.join(' ')}`)
  }
  return `${lines.join('\n')}\n`
}

export function renderStorage(spec: TenantSpec, r: Resources): DesiredObject[] {
  return [
    {
      driver: 'storage',
      id: 'acl.json',
      content: `${JSON.stringify(storageAcl(spec, r), null, 2)}\n`,
    },
    { driver: 'storage', id: 'exports', content: renderNfsExports(spec, r) },
  ]
}
