import { addRoleBinding, hasRoleBinding } from '../authz/writer.ts'
import type { Db } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import type { AdminDeps } from '../iam/admin/context.ts'
import { listUsers } from '../iam/admin/users.ts'
import { ADMIN_CLIENT_ID, ADMIN_USERNAME, PLATFORM_REALM } from '../iam/bootstrap.ts'

/**
 * The bootstrap principals (platform-admin service client and first admin user) hold the
 * platform-admin role at the platform scope. Idempotent: runs at every start after IAM's
 * bootstrap, recorded as an event when it adds a binding.
 */
export async function grantBootstrapRoles(db: Db, admin: Pick<AdminDeps, 'db'>, events: EventSink) {
  const user = (await listUsers(admin, PLATFORM_REALM)).find((u) => u.username === ADMIN_USERNAME)
  const principals = [
    { type: 'ServiceAccount' as const, id: `${PLATFORM_REALM}/${ADMIN_CLIENT_ID}` },
    ...(user ? [{ type: 'User' as const, id: `${PLATFORM_REALM}/${user.id}` }] : []),
  ]
  await db.transaction(async (tx) => {
    for (const principal of principals) {
      const binding = {
        tenant: PLATFORM_REALM,
        principal,
        role: 'platform-admin' as const,
        scope: { type: 'Tenant' as const, id: PLATFORM_REALM },
      }
      if (await hasRoleBinding(tx, binding)) continue
      await addRoleBinding(tx, binding)
      await events.record(
        {
          type: 'authz.binding.created',
          tenant: PLATFORM_REALM,
          actor: { kind: 'system', id: 'bootstrap' },
          action: 'rolebinding.create',
          resource: { type: principal.type, id: principal.id },
          outcome: 'success',
          details: { role: 'platform-admin', scope: `Tenant:${PLATFORM_REALM}` },
        },
        tx,
      )
    }
  })
}
