/** SQL identifiers that we interpolate (roles, channels) must match this; everything else is a parameter. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/

export function assertIdentifier(kind: string, name: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`invalid ${kind} name: must match ${IDENTIFIER}`)
  return name
}
