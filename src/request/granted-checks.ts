import type { Action, AppAbility } from '../authorization/abilities';

/**
 * The grants a request's abilities already gave on particular objects, so that a field's guard
 * (enforceDeclaredRules) need not ask CASL again what a service asked it on the very same object: a page of
 * users with `accessKey` asks `read` of `accessKey` on each row before revealing the keys (UserService.list), and
 * the field's `parent` rule asks the same of the same row. Only grants are remembered, only by object identity
 * (held by the request's Actor, so for the request only), and only for the ability that gave them: CASL's answer depends
 * on nothing else (the rules of an ability are never updated after it is built, abilities.ts), and the objects
 * recorded are rows a request read and does not change. A refusal is never remembered: it is asked again.
 */
export class GrantedChecks {
  /** By action, then field ('' for none): the ability that granted, and the objects it granted on. */
  private readonly byRule = new Map<Action, Map<string, { ability: AppAbility; subjects: Set<object> }>>();

  /**
   * `ability.can(action, subject, field)`, remembering a grant on this `subject` object. Returns CASL's answer.
   */
  can(ability: AppAbility, action: Action, subject: object, field?: string): boolean {
    if (!ability.can(action, subject as Parameters<AppAbility['can']>[1], field)) return false;
    let byField = this.byRule.get(action);
    if (!byField) this.byRule.set(action, (byField = new Map()));
    let granted = byField.get(field ?? '');
    if (!granted || granted.ability !== ability) {
      granted = { ability, subjects: new Set() };
      byField.set(field ?? '', granted);
    }
    granted.subjects.add(subject);
    return true;
  }

  /** True when `can` granted `action` (on `field`) on this very `subject` object with this very `ability`. */
  has(ability: AppAbility, action: Action, subject: object, field?: string): boolean {
    const granted = this.byRule.get(action)?.get(field ?? '');
    return granted !== undefined && granted.ability === ability && granted.subjects.has(subject);
  }
}
