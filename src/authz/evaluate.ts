/**
 * Stand-alone evaluation of Cedar files (policies text, entities JSON, request JSON) with our
 * compiled evaluator: what `dflare authz eval` runs. No database, no platform policies.
 */
import { contextFromJson, entitiesFromJson } from './cedar/entities.ts'
import { assertSupported, parsePolicySetText } from './cedar/parse.ts'
import { CompiledPolicySet } from './cedar/policyset.ts'
import { entityFromJson } from './cedar/values.ts'

export interface EvalFilesResult {
  decision: 'allow' | 'deny'
  determining: string[]
  errors: { policy: string; message: string }[]
}

export interface RequestJson {
  principal: unknown
  action: unknown
  resource: unknown
  context?: unknown
}

export function evaluateFiles(
  policiesText: string,
  entities: unknown,
  request: RequestJson,
): EvalFilesResult {
  const parsed = parsePolicySetText(policiesText, false)
  for (const p of parsed) assertSupported(p.json, p.id)
  const set = new CompiledPolicySet(parsed.map(({ id, json }) => ({ id, json })))
  const r = set.evaluate(
    {
      principal: entityFromJson(request.principal),
      action: entityFromJson(request.action),
      resource: entityFromJson(request.resource),
      context: contextFromJson(request.context ?? {}),
    },
    entitiesFromJson(entities as never),
  )
  return { decision: r.allow ? 'allow' : 'deny', determining: r.determining, errors: r.errors }
}
