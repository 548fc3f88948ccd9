import type { Resources } from '../resources.ts'
import { parseCidr, type TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'

type Expr = Record<string, unknown>

const prefix = (cidr: string) => {
  const p = parseCidr(cidr)!
  return { prefix: { addr: p.addr, len: p.prefix } }
}
const match = (left: unknown, right: unknown, op = '=='): Expr => ({ match: { op, left, right } })
const saddr = { payload: { protocol: 'ip', field: 'saddr' } }
const daddr = { payload: { protocol: 'ip', field: 'daddr' } }

/**
 * The tenant's part of the perimeter as an nftables JSON ruleset (`nft -j -f FILE`). All
 * tenants share the table `dflare_perimeter` whose forward chain drops by default; a tenant's
 * traffic jumps to its own chain only when addressed to its networks (named set dst4), and that
 * chain accepts only the allow-listed sources (named set src4) on the listed ports.
 */
export function nftRuleset(spec: TenantSpec, r: Resources) {
  const f = r.firewall
  const family = 'inet'
  const base = { family, table: f.table }
  const set = (name: string, cidrs: string[]) => ({
    set: {
      ...base,
      name,
      type: 'ipv4_addr',
      flags: ['interval'],
      'auto-merge': true,
      ...(cidrs.length ? { elem: [...new Set(cidrs)].map(prefix) } : {}),
    },
  })
  const rule = (chain: string, expr: Expr[]) => ({ rule: { ...base, chain, expr } })
  const rules = spec.ingress.map((i) => {
    const expr: Expr[] = [match(saddr, prefix(i.cidr))]
    if (i.protocol === 'icmp') expr.push(match({ meta: { key: 'l4proto' } }, 'icmp'))
    else {
      const ports = i.ports.map((p) => (p.from === p.to ? p.from : { range: [p.from, p.to] }))
      expr.push(match({ payload: { protocol: i.protocol, field: 'dport' } }, { set: ports }))
    }
    expr.push({ accept: null })
    return rule(f.chain, expr)
  })
  return {
    nftables: [
      { metainfo: { json_schema_version: 1 } },
      { table: { family, name: f.table } },
      {
        chain: {
          ...base,
          name: 'forward',
          type: 'filter',
          hook: 'forward',
          prio: 0,
          policy: 'drop',
        },
      },
      set(
        f.dst4,
        r.networks.map((n) => n.cidr),
      ),
      set(
        f.src4,
        spec.ingress.map((i) => i.cidr),
      ),
      { chain: { ...base, name: f.chain } },
      rule('forward', [match(daddr, `@${f.dst4}`), { jump: { target: f.chain } }]),
      // Replies of accepted connections leave through the same perimeter.
      rule('forward', [
        match(saddr, `@${f.dst4}`),
        match({ ct: { key: 'state' } }, ['established', 'related'], 'in'),
        { accept: null },
      ]),
      rule(f.chain, [match(saddr, `@${f.src4}`, '!='), { drop: null }]),
      ...rules,
    ],
  }
}

export function renderFirewall(spec: TenantSpec, r: Resources): DesiredObject[] {
  return [
    {
      driver: 'firewall',
      id: 'ruleset.json',
      content: `${JSON.stringify(nftRuleset(spec, r), null, 2)}\n`,
    },
  ]
}
