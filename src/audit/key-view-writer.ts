import { subject } from '@casl/ability';
import type { DataSource } from 'typeorm';

import type { AppAbility } from '../authorization/abilities';
import type { Authority } from '../authorization/authority';
import { runPreparedIn } from '../db/prepared';
import { DomainError, ForbiddenError } from '../errors';
import type { Actor } from '../request/actor';
import { AuditAction } from './audit-event.entity';
import { type AuditActor, auditRowValues, INSERT_AUDIT_ROWS, type KeyViewRow, type ReplacedKeys } from './audit-rows';

/** Whose key a reveal shows, and the ciphertext of the key it read and decrypted. */
export interface KeyViewTarget {
  readonly userId: string;
  readonly organizationId: string;
  readonly keyCiphertext: Buffer;
  /**
   * The object (the user's row as the request read it) on which the request's abilities granted `read` of
   * `accessKey` (GrantedChecks, UserService.list), if any: when it has this target's id and organization, the
   * target's check as authenticated is that grant, not another CASL question; otherwise it is asked of CASL.
   */
  readonly subject?: { readonly id: string; readonly organizationId: string };
}

/**
 * The targets of a request's views (by index in its targets) whose key, as locked when the views committed,
 * is not the one the request read: the key row's ciphertext then, or null when the user has no key now.
 * Usually empty.
 */
export type ReplacedTargetKeys = ReadonlyMap<number, Buffer | null>;

const NONE_REPLACED: ReplacedTargetKeys = new Map();

interface Waiting {
  actor: Actor;
  who: AuditActor;
  targets: readonly KeyViewTarget[];
  /** Its views, one per target in order: made when its batch is written. */
  rows?: KeyViewRow[];
  resolve: (replaced: ReplacedTargetKeys) => void;
  reject: (error: unknown) => void;
}

interface Outcome {
  /** The requests refused, with their refusal; the others had their views committed. */
  refusals: Map<Waiting, DomainError>;
  replaced: ReplacedKeys;
}

const MAX_ROWS_PER_INSERT = 5000;

/**
 * Group commit for ACCESS_KEY_VIEWED: while one batch is being committed, the views of every other request of
 * the same organization queue up and go in its next batch together. A batch first confirms the authority of each
 * distinct actor in it as committed at that moment, under locks taken in the one order, and inserts the views of
 * the actors that passed, in one statement (Authority.insertIfConfirmed); an actor it does not confirm goes through a
 * transaction of confirmEach and the insert, which gives its refusal. Each request waits for the commit that
 * holds its own events before its keys are returned, so a key is never revealed without its record, nor to an
 * actor whose authority had ended; the database pays one commit per batch, not per request. Both ways lock the
 * views' targets' key rows FOR SHARE with the insert and answer each request the targets whose key is no longer
 * the one it read (a regeneration committed since): the key a view shows is its target's key when it committed.
 *
 * One batch at a time per organization (the actor's): a second one in flight for the same rows was measured
 * (docs/performance.md, 2026-12-01, the admin reveal) and made batches half as large, with more statements,
 * commits and CPU per request, for no more throughput. Organizations do not share a batch, so an act that holds
 * one organization's row FOR UPDATE for long (a key policy rewriting every key of a large organization, or its
 * deactivation) holds back that organization's reveals only, not every organization's behind them.
 */
export class KeyViewWriter {
  /** Each organization's requests waiting for its next batch; an organization is here while its batches run. */
  private readonly queues = new Map<string, Waiting[]>();

  constructor(private readonly deps: { dataSource: DataSource; authority: Authority }) {}

  /** How many requests' views wait for their organization's next batch (behind the one being committed). */
  get waiting(): number {
    let count = 0;
    for (const queue of this.queues.values()) count += queue.length;
    return count;
  }

  /**
   * Resolves once the views are committed, with the targets whose key was replaced since the caller read it
   * (ReplacedTargetKeys: show those instead); rejects with the refusal when the actor may no longer see them,
   * or with the database's error.
   */
  record(params: { actor: Actor; who: AuditActor; targets: readonly KeyViewTarget[] }): Promise<ReplacedTargetKeys> {
    // Refused earlier in this request: no batch, no query.
    if (params.actor.refusal) return Promise.reject(params.actor.refusal);
    return new Promise((resolve, reject) => {
      const { organizationId } = params.actor.principal;
      const waiting = { ...params, resolve, reject };
      const queue = this.queues.get(organizationId);
      if (queue) queue.push(waiting);
      else void this.drain(organizationId, [waiting]);
    });
  }

  /** Commits one organization's batches, one at a time, until its queue is empty. */
  private async drain(organizationId: string, queue: Waiting[]): Promise<void> {
    this.queues.set(organizationId, queue);
    while (queue.length > 0) {
      const batch: Waiting[] = [];
      let size = 0;
      while (queue.length > 0 && (batch.length === 0 || size + queue[0].targets.length <= MAX_ROWS_PER_INSERT)) {
        const next = queue.shift()!;
        size += next.targets.length;
        batch.push(next);
      }
      await this.commit(batch);
    }
    this.queues.delete(organizationId);
  }

  /** Writes one batch and settles each of its requests: resolved, or rejected with its refusal or the error. */
  private async commit(batch: readonly Waiting[]): Promise<void> {
    try {
      const { refusals, replaced } = await this.write(batch);
      for (const waiting of batch) {
        const refusal = refusals.get(waiting);
        if (refusal) waiting.reject(refusal);
        else waiting.resolve(replaced.size === 0 ? NONE_REPLACED : replacedOf(waiting, replaced));
      }
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    }
  }

  /**
   * Settles a batch: first, in one statement (Authority.insertIfConfirmed), the views of every request whose
   * actor's authority stands as it was authenticated and whose abilities grant every key; then, in one
   * transaction (confirmEach, then the insert), the others, which get their refusal or, when a changed role
   * still grants the keys, their views. Returns the refusals (requests not in it had their views committed) and
   * the views whose key was replaced.
   */
  private async write(batch: readonly Waiting[]): Promise<Outcome> {
    const atOnce: Array<{ actor: Actor; rows: KeyViewRow[] }> = [];
    const rest: Waiting[] = [];
    const rowsOf = new Map<Actor, KeyViewRow[]>();
    for (const waiting of batch) {
      // As authenticated; insertIfConfirmed inserts nothing for an actor whose role changed since.
      if (!seesEveryKey(waiting.actor, waiting.targets)) {
        rest.push(waiting);
        continue;
      }
      let rows = rowsOf.get(waiting.actor);
      if (!rows) {
        rows = [];
        rowsOf.set(waiting.actor, rows);
        atOnce.push({ actor: waiting.actor, rows });
      }
      rows.push(...viewRowsOf(waiting));
    }
    const { confirmed, replaced } = await this.deps.authority.insertIfConfirmed(this.deps.dataSource, atOnce);
    const refused = new Set(rest);
    for (const waiting of batch) if (!refused.has(waiting) && !confirmed.has(waiting.actor)) rest.push(waiting);
    if (rest.length === 0) return { refusals: new Map(), replaced };
    const others = await this.confirmAndWrite(rest);
    for (const [row, ciphertext] of others.replaced) replaced.set(row, ciphertext);
    return { refusals: others.refusals, replaced };
  }

  /**
   * One transaction: confirm every actor, locking the key rows of every target with the actors' credential rows
   * (confirmEach), then insert the views of those who may see the keys; the views whose key row, as locked,
   * holds another key than the one read are the replaced ones.
   */
  private confirmAndWrite(batch: readonly Waiting[]): Promise<Outcome> {
    return this.deps.dataSource.transaction(async (manager) => {
      const { verdicts, keyCiphertexts } = await this.deps.authority.confirmEach(manager, {
        actors: [...new Set(batch.map((waiting) => waiting.actor))],
        revealing: batch.flatMap((waiting) => waiting.targets),
      });
      const refusals = new Map<Waiting, DomainError>();
      const replaced: ReplacedKeys = new Map();
      const rows: KeyViewRow[] = [];
      for (const waiting of batch) {
        const verdict = verdicts.get(waiting.actor)!;
        try {
          if (verdict instanceof DomainError) throw verdict;
          verdict.authorize((ability) => {
            for (const target of waiting.targets)
              if (!canSeeKey(ability, target))
                throw new ForbiddenError('Only admins of the organization can see access keys.');
          });
        } catch (error) {
          refusals.set(waiting, error as DomainError);
          continue;
        }
        rows.push(...viewRowsOf(waiting));
      }
      if (rows.length === 0) return { refusals, replaced };
      await runPreparedIn(manager, INSERT_AUDIT_ROWS, auditRowValues(rows));
      for (const row of rows) {
        const current = keyCiphertexts.get(row.targetUserId!) ?? null;
        if (!current?.equals(row.keyCiphertext)) replaced.set(row, current);
      }
      return { refusals, replaced };
    });
  }
}

/** abilities.ts: may `ability` read this user's `accessKey`. */
function canSeeKey(ability: AppAbility, target: KeyViewTarget): boolean {
  return ability.can(
    'read',
    subject('User', { id: target.userId, organizationId: target.organizationId }),
    'accessKey',
  );
}

/**
 * May `actor`'s abilities as authenticated read every target's `accessKey`: granted already in this request on
 * the target's row object (KeyViewTarget.subject, GrantedChecks), else asked of CASL (canSeeKey). A grant counts
 * only for the user it was made on: a subject with another id or organization than its target's (a caller's
 * mistake) is no grant for that target, which is then asked of CASL.
 */
function seesEveryKey(actor: Actor, targets: readonly KeyViewTarget[]): boolean {
  const { ability, grants } = actor;
  for (const target of targets) {
    const { subject } = target;
    if (
      subject &&
      subject.id === target.userId &&
      subject.organizationId === target.organizationId &&
      grants?.has(ability, 'read', subject, 'accessKey')
    ) {
      continue;
    }
    if (!canSeeKey(ability, target)) return false;
  }
  return true;
}

/** One ACCESS_KEY_VIEWED row per target of the request, in order; made once, kept on the request. */
function viewRowsOf(waiting: Waiting): KeyViewRow[] {
  return (waiting.rows ??= waiting.targets.map((target) => ({
    actor: waiting.who,
    action: AuditAction.ACCESS_KEY_VIEWED,
    organizationId: target.organizationId,
    targetUserId: target.userId,
    keyCiphertext: target.keyCiphertext,
  })));
}

/** The request's own replaced keys among the batch's, by index in its targets. */
function replacedOf(waiting: Waiting, replaced: ReplacedKeys): ReplacedTargetKeys {
  let own: Map<number, Buffer | null> | undefined;
  const rows = waiting.rows ?? [];
  for (let i = 0; i < rows.length; i++) {
    const ciphertext = replaced.get(rows[i]);
    if (ciphertext !== undefined) (own ??= new Map()).set(i, ciphertext);
  }
  return own ?? NONE_REPLACED;
}
