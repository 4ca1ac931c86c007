import type { ActorKind, AuditAction } from './audit-event.entity';

/** Who did it, as the audit log records it: a signed-in person, a key, or an operator command. */
export interface AuditActor {
  readonly userId: string | null;
  readonly kind: ActorKind;
  readonly ip: string | null;
  readonly requestId: string | null;
}

export interface AuditRow {
  readonly actor: AuditActor;
  readonly action: AuditAction;
  readonly organizationId: string | null;
  readonly targetUserId: string | null;
}

/** An ACCESS_KEY_VIEWED row, with the ciphertext of the key its reveal read and decrypted. */
export interface KeyViewRow extends AuditRow {
  readonly keyCiphertext: Buffer;
}

/**
 * Views whose target's key row, as locked where the views were inserted, holds another key than the one the
 * reveal read (a regeneration, or a secret rotation's re-encryption, committed in between): the key row's
 * ciphertext then, or null when the target has no key row now. Views not in it showed the current key.
 */
export type ReplacedKeys = Map<KeyViewRow, Buffer | null>;

/** One statement for any number of events, used inside a change's transaction and by the key-view batches. */
export const INSERT_AUDIT_ROWS = `INSERT INTO audit_events (organization_id, action, actor_user_id, actor_kind, target_user_id, ip, request_id)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[])`;

/** INSERT_AUDIT_ROWS's seven parameters for `rows`: one array per column, in the statement's order. */
export function auditRowValues(rows: readonly AuditRow[]): unknown[][] {
  return [
    rows.map((row) => row.organizationId),
    rows.map((row) => row.action),
    rows.map((row) => row.actor.userId),
    rows.map((row) => row.actor.kind),
    rows.map((row) => row.targetUserId),
    rows.map((row) => row.actor.ip),
    rows.map((row) => row.actor.requestId),
  ];
}
