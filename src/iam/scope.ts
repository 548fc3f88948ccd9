import type { Queryable } from '../core/db/index.ts'

/**
 * The one scope a token operates in: the whole tenant (`org`), one domain or one project.
 * Carried in access tokens as the claim named by SCOPE_CLAIM; narrower scopes come only from
 * token exchange (RFC 8693), which never widens.
 */
export type TokenScope =
  | { kind: 'org' }
  | { kind: 'domain'; id: string }
  | { kind: 'project'; id: string }

export const SCOPE_CLAIM = 'tscope'
export const ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/

export function parseTokenScope(value: unknown): TokenScope | undefined {
  if (value === 'org') return { kind: 'org' }
  if (typeof value !== 'string') return undefined
  const m = /^(domain|project):(.+)$/.exec(value)
  if (!m || !ID_PATTERN.test(m[2]!)) return undefined
  return { kind: m[1] as 'domain' | 'project', id: m[2]! }
}

export function formatTokenScope(s: TokenScope): string {
  return s.kind === 'org' ? 'org' : `${s.kind}:${s.id}`
}

/** Picks the scope target out of an OAuth `scope` parameter; at most one may be present. */
export function scopeFromParam(param: string | undefined): TokenScope | undefined | 'ambiguous' {
  const found = (param ?? '')
    .split(' ')
    .map(parseTokenScope)
    .filter((s): s is TokenScope => s !== undefined)
  if (found.length > 1) return 'ambiguous'
  return found[0]
}

/**
 * Whether `to` is the same as or inside `from` in this realm: org ⊃ domain ⊃ project. Checks the
 * target exists, so a token is never minted for a domain or project the tenant does not have.
 */
export async function isNarrowing(
  q: Queryable,
  realm: string,
  from: TokenScope,
  to: TokenScope,
): Promise<boolean> {
  if (to.kind === 'org') return from.kind === 'org'
  if (to.kind === 'domain') {
    if (from.kind === 'project') return false
    if (from.kind === 'domain' && from.id !== to.id) return false
    const r = await q.query('SELECT 1 FROM iam.domains WHERE realm = $1 AND id = $2', [
      realm,
      to.id,
    ])
    return r.rows.length === 1
  }
  if (from.kind === 'project') return from.id === to.id
  const r = await q.query<{ domain_id: string }>(
    'SELECT domain_id FROM iam.projects WHERE realm = $1 AND id = $2',
    [realm, to.id],
  )
  const project = r.rows[0]
  if (!project) return false
  return from.kind === 'org' || project.domain_id === from.id
}
