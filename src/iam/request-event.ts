import type { SecurityEvent } from '../core/events.ts'

/** Where a sign-in request came from, for its security events. */
export interface RequestInfo {
  ip?: string
  userAgent?: string
  correlationId?: string
}

/** A security event of a sign-in step: in the realm's log, with the request's origin. */
export function requestEvent(
  realm: string,
  req: RequestInfo,
  e: Omit<SecurityEvent, 'tenant' | 'sourceIp' | 'userAgent' | 'correlationId'>,
): SecurityEvent {
  return {
    tenant: realm,
    sourceIp: req.ip,
    userAgent: req.userAgent,
    correlationId: req.correlationId,
    ...e,
  }
}
