// oidc-provider ships no type declarations; this is the small surface the iam module uses.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http'

  // biome-ignore lint/suspicious/noExplicitAny: untyped library
  type Any = any

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>)
    proxy: boolean
    readonly issuer: string
    callback(): (req: IncomingMessage, res: ServerResponse) => void
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Any>
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>
    interactionResult(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<string>
    registerGrantType(
      name: string,
      handler: (ctx: Any, next: () => Promise<void>) => Promise<void>,
      params?: string[],
    ): void
    /** Koa's context for a raw request (Provider extends Koa), e.g. for Session.get. */
    createContext(req: IncomingMessage, res: ServerResponse): Any
    use(middleware: (ctx: Any, next: () => Promise<void>) => Promise<void>): void
    on(event: string, listener: (...args: Any[]) => void): this
    Grant: Any
    Session: Any
    AccessToken: Any
    ClientCredentials: Any
    ResourceServer: Any
    Client: Any
  }
  export const errors: Record<string, new (description?: string, detail?: string) => Error>
  export default Provider
}
