import type { Logger } from 'pino'
import type { PeerClient } from '../pki/peer-client.ts'
import type { AuthorizationRequest, Decision, Pdp } from './contract.ts'

/**
 * The Pdp contract over the network: asks the authz component of another process
 * (`POST /internal/v1/authz/decide`, mutual TLS). Fails closed: when the PDP cannot be reached
 * or answers anything but a well-formed decision, the answer is deny.
 */
export const UNAVAILABLE_REASON = 'the policy decision point is unavailable'

function isDecision(v: unknown): v is Decision {
  const d = v as Decision
  return (
    !!d &&
    (d.decision === 'allow' || d.decision === 'deny') &&
    Array.isArray(d.determining) &&
    d.determining.every((p) => typeof p === 'string') &&
    Array.isArray(d.errors) &&
    d.errors.every((e) => typeof e?.policy === 'string' && typeof e?.message === 'string') &&
    typeof d.reason === 'string'
  )
}

export class RemotePdp implements Pdp {
  readonly #client: PeerClient
  readonly #log: Logger | undefined

  constructor(client: PeerClient, log?: Logger) {
    this.#client = client
    this.#log = log
  }

  async decide(request: AuthorizationRequest): Promise<Decision> {
    try {
      const r = await this.#client.request('POST', '/internal/v1/authz/decide', request, {
        idempotent: true,
      })
      if (r.status === 200 && isDecision(r.body))
        return {
          decision: r.body.decision,
          determining: r.body.determining,
          errors: r.body.errors,
          reason: r.body.reason,
        }
      this.#log?.error({ status: r.status }, 'remote PDP gave no decision; denying')
    } catch (err) {
      this.#log?.error({ err: (err as Error).message }, 'remote PDP unreachable; denying')
    }
    return { decision: 'deny', determining: [], errors: [], reason: UNAVAILABLE_REASON }
  }
}
