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
    this.grantedSet(ability, action, field).add(subject);
    return true;
  }

  /** The set of objects `ability` granted `action` (on `field`) on: a new one when another ability granted last. */
  private grantedSet(ability: AppAbility, action: Action, field: string | undefined): Set<object> {
    let byField = this.byRule.get(action);
    if (!byField) this.byRule.set(action, (byField = new Map()));
    let granted = byField.get(field ?? '');
    if (!granted || granted.ability !== ability) {
      granted = { ability, subjects: new Set() };
      byField.set(field ?? '', granted);
    }
    return granted.subjects;
  }

  /**
   * `ability.can(action, subject, field)` for each of `subjects`, remembering each grant as `can` does; returns
   * the subjects granted, in order. The same answers as asking `can` one by one (CASL's `can`: the first of
   * `rulesFor(action, subject type, field)` whose conditions match the subject decides, none refuses), with the
   * rules looked up once per subject type instead of once per subject: a page asks it of 100 rows.
   */
  canEach<T extends object>(ability: AppAbility, action: Action, subjects: readonly T[], field?: string): T[] {
    const granted: T[] = [];
    let lastType: unknown;
    let rules: ReturnType<AppAbility['rulesFor']> | undefined;
    for (const subject of subjects) {
      const type = ability.detectSubjectType(subject as Parameters<AppAbility['detectSubjectType']>[0]);
      if (rules === undefined || type !== lastType) {
        rules = ability.rulesFor(action, type, field);
        lastType = type;
      }
      let allowed = false;
      for (let i = 0; i < rules.length; i++) {
        if (rules[i].matchesConditions(subject as Parameters<(typeof rules)[number]['matchesConditions']>[0])) {
          allowed = !rules[i].inverted;
          break;
        }
      }
      if (allowed) granted.push(subject);
    }
    if (granted.length > 0) {
      const set = this.grantedSet(ability, action, field);
      for (const subject of granted) set.add(subject);
    }
    return granted;
  }

  /** True when `can` granted `action` (on `field`) on this very `subject` object with this very `ability`. */
  has(ability: AppAbility, action: Action, subject: object, field?: string): boolean {
    const granted = this.byRule.get(action)?.get(field ?? '');
    return granted !== undefined && granted.ability === ability && granted.subjects.has(subject);
  }
}
