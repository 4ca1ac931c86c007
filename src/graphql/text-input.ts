import { type DocumentNode, Kind, type ValueNode, visit } from 'graphql';

import { DomainError } from '../errors';
import type { OperationCheckContext } from './operation-checks';

/** PostgreSQL text cannot hold U+0000: a string carrying it is refused up front, not by a failing statement. */
const NUL = '\u0000';
/**
 * With the u flag a surrogate matches only when it is unpaired. JSON variables can carry one ("\ud800");
 * PostgreSQL would store U+FFFD while the answer echoed the input. (graphql-js refuses them in literals.)
 */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

type Flaw = 'NUL' | 'SURROGATE';

function flawOf(text: string): Flaw | null {
  if (text.includes(NUL)) return 'NUL';
  return UNPAIRED_SURROGATE.test(text) ? 'SURROGATE' : null;
}

const DESCRIPTION: Record<Flaw, string> = {
  NUL: 'contains the NUL character (U+0000), which no text field can hold',
  SURROGATE: 'contains an unpaired surrogate (invalid UTF-16), which no text field can hold',
};

class UnstorableTextError extends DomainError {
  constructor(params: { where: string; field: string; flaw: Flaw }) {
    super(`${params.where} ${DESCRIPTION[params.flaw]}.`, 'BAD_USER_INPUT', {
      field: params.field,
      http: { status: 400 },
    });
  }
}

interface Found {
  /** Where in the input: `input.name`, `ids[2]`. */
  readonly path: string;
  /** The innermost input field or argument name holding the string. */
  readonly field: string;
  readonly flaw: Flaw;
}

/**
 * The first string inside `value` (objects and lists walked, 32 levels at most) that no text field can hold,
 * with where it is: `at` names the value itself (`$input`, and the field it is given to).
 */
function findUnstorableText(value: unknown, at: { path: string; field: string; depth: number }): Found | null {
  if (typeof value === 'string') {
    const flaw = flawOf(value);
    return flaw ? { path: at.path, field: at.field, flaw } : null;
  }
  if (value === null || typeof value !== 'object' || at.depth > 32) return null;
  const depth = at.depth + 1;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = findUnstorableText(item, { path: `${at.path}[${index}]`, field: at.field, depth });
      if (found) return found;
    }
    return null;
  }
  for (const [name, item] of Object.entries(value)) {
    const found = findUnstorableText(item, { path: `${at.path}.${name}`, field: name, depth });
    if (found) return found;
  }
  return null;
}

/** True when a string, or any string inside an object or list, carries U+0000. */
export function holdsNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes(NUL);
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  return Object.values(value).some((item) => holdsNul(item, depth + 1));
}

function literalFlaw(value: ValueNode): Flaw | null {
  if (value.kind === Kind.STRING) return flawOf(value.value);
  if (value.kind === Kind.LIST) {
    for (const item of value.values) {
      const flaw = literalFlaw(item);
      if (flaw) return flaw;
    }
  }
  return null;
}

/** Documents are parsed once per query text (Apollo's document store), so each is read once. */
const literalsChecked = new WeakMap<DocumentNode, Found | null>();
const variableUses = new WeakMap<DocumentNode, Map<string, string>>();

/** Each variable's first use: the argument or input field it is given to (`$s` in `{ search: $s }` is "search"). */
function fieldsOfVariables(document: DocumentNode): Map<string, string> {
  let uses = variableUses.get(document);
  if (!uses) {
    const found = new Map<string, string>();
    const note = (node: { name: { value: string }; value: ValueNode }) => {
      const value = node.value.kind === Kind.LIST ? node.value.values : [node.value];
      for (const item of value) {
        if (item.kind === Kind.VARIABLE && !found.has(item.name.value)) found.set(item.name.value, node.name.value);
      }
    };
    visit(document, { [Kind.ARGUMENT]: note, [Kind.OBJECT_FIELD]: note });
    variableUses.set(document, (uses = found));
  }
  return uses;
}

/** The first argument or input field whose string literal no text field can hold. */
function unstorableLiteral(document: DocumentNode): Found | null {
  let found = literalsChecked.get(document);
  if (found === undefined) {
    found = null;
    const check = (node: { name: { value: string }; value: ValueNode }) => {
      const flaw = found ? null : literalFlaw(node.value);
      if (flaw) found = { path: node.name.value, field: node.name.value, flaw };
    };
    visit(document, { [Kind.ARGUMENT]: check, [Kind.OBJECT_FIELD]: check });
    literalsChecked.set(document, found);
  }
  return found;
}

/**
 * Refuses, with 400 BAD_USER_INPUT naming the field before any resolver runs, an operation with a string
 * that no text field can hold (U+0000, an unpaired surrogate), in a literal or anywhere in a variable. Runs in
 * operationChecksListener.
 * @throws UnstorableTextError (HTTP 400 BAD_USER_INPUT)
 */
export function checkTextInput({ document, request }: OperationCheckContext): void {
  const literal = unstorableLiteral(document);
  if (literal)
    throw new UnstorableTextError({
      where: `The string given for "${literal.path}"`,
      field: literal.field,
      flaw: literal.flaw,
    });
  const fields = fieldsOfVariables(document);
  for (const [name, value] of Object.entries(request.variables ?? {})) {
    const found = findUnstorableText(value, { path: `$${name}`, field: fields.get(name) ?? name, depth: 0 });
    if (found) throw new UnstorableTextError({ where: `Variable ${found.path}`, field: found.field, flaw: found.flaw });
  }
}
