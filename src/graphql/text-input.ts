import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, visit, type DocumentNode } from 'graphql';
import { DomainError } from '../errors';

/** PostgreSQL text cannot hold U+0000: a string carrying it is refused up front, not by a failing statement. */
const NUL = '\u0000';

class NulInputError extends DomainError {
  constructor(where: string) {
    super(`${where} contains the NUL character (U+0000), which no text field can hold.`, 'BAD_USER_INPUT', {
      http: { status: 400 },
    });
  }
}

/** Documents are parsed once per query text (Apollo's document store), so each is checked once. */
const literalsChecked = new WeakMap<DocumentNode, boolean>();

function literalsHoldNul(document: DocumentNode): boolean {
  let found = literalsChecked.get(document);
  if (found === undefined) {
    found = false;
    visit(document, {
      [Kind.STRING](node) {
        if (node.value.includes(NUL)) found = true;
      },
    });
    literalsChecked.set(document, found);
  }
  return found;
}

/** True when a string, or any string inside an object or list, carries U+0000. */
export function holdsNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes(NUL);
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  return Object.values(value).some((item) => holdsNul(item, depth + 1));
}

/** Refuses, with 400 BAD_USER_INPUT before any resolver runs, an operation whose strings carry U+0000. */
export function textInputPlugin(): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ document, request }) {
          if (literalsHoldNul(document)) throw new NulInputError('A string in the operation');
          for (const [name, value] of Object.entries(request.variables ?? {})) {
            if (holdsNul(value)) throw new NulInputError(`Variable $${name}`);
          }
        },
      };
    },
  };
}
