/**
 * RFC 9457 problem details. Every error a client sees is a Problem; anything else becomes a
 * generic 500 whose detail never includes the original message (it may hold secrets).
 */
export interface ProblemInit {
  status: number
  title: string
  detail?: string
  /** URI naming the problem type; defaults to `about:blank`. */
  type?: string
  /** Extension members (RFC 9457 §3.2), e.g. `errors` for validation failures. */
  extensions?: Record<string, unknown>
  /** Extra response headers, e.g. `WWW-Authenticate`, `Retry-After`. */
  headers?: Record<string, string>
}

export const PROBLEM_BASE = 'https://dflare.dev/problems/'

export class Problem extends Error {
  override name = 'Problem'
  readonly status: number
  readonly title: string
  readonly detail: string | undefined
  readonly type: string
  readonly extensions: Record<string, unknown>
  readonly headers: Record<string, string>

  constructor(init: ProblemInit) {
    super(init.detail ?? init.title)
    this.status = init.status
    this.title = init.title
    this.detail = init.detail
    this.type = init.type ?? 'about:blank'
    this.extensions = init.extensions ?? {}
    this.headers = init.headers ?? {}
  }

  toJSON(instance?: string) {
    return {
      type: this.type,
      title: this.title,
      status: this.status,
      ...(this.detail ? { detail: this.detail } : {}),
      ...(instance ? { instance } : {}),
      ...this.extensions,
    }
  }
}

export interface FieldError {
  /** JSON pointer or dotted path of the invalid field. */
  field: string
  message: string
}

export const problems = {
  badRequest: (detail: string, errors?: FieldError[]) =>
    new Problem({
      status: 400,
      title: 'Bad Request',
      type: `${PROBLEM_BASE}invalid-request`,
      detail,
      extensions: errors ? { errors } : undefined,
    }),
  unauthorized: (detail = 'A valid credential is required', challenge = 'Bearer') =>
    new Problem({
      status: 401,
      title: 'Unauthorized',
      type: `${PROBLEM_BASE}unauthorized`,
      detail,
      headers: { 'www-authenticate': challenge },
    }),
  forbidden: (detail = 'The request is not allowed', extensions?: Record<string, unknown>) =>
    new Problem({
      status: 403,
      title: 'Forbidden',
      type: `${PROBLEM_BASE}forbidden`,
      detail,
      extensions,
    }),
  notFound: (detail = 'The resource does not exist') =>
    new Problem({ status: 404, title: 'Not Found', type: `${PROBLEM_BASE}not-found`, detail }),
  conflict: (detail: string) =>
    new Problem({ status: 409, title: 'Conflict', type: `${PROBLEM_BASE}conflict`, detail }),
  tooManyRequests: (retryAfterSeconds: number) =>
    new Problem({
      status: 429,
      title: 'Too Many Requests',
      type: `${PROBLEM_BASE}rate-limited`,
      detail: `Rate limit exceeded; retry after ${retryAfterSeconds} s`,
      headers: { 'retry-after': String(retryAfterSeconds) },
    }),
  unavailable: (detail = 'The service is temporarily unavailable') =>
    new Problem({
      status: 503,
      title: 'Service Unavailable',
      type: `${PROBLEM_BASE}unavailable`,
      detail,
    }),
  internal: () =>
    new Problem({
      status: 500,
      title: 'Internal Server Error',
      type: `${PROBLEM_BASE}internal`,
      detail: 'The server failed to handle the request; quote the correlation id when reporting it',
    }),
}
