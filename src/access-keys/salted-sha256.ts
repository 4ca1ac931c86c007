import { hash } from 'node:crypto';

/** The shortest salt taken: 256 bits, as much as SHA-256 gives back. */
const MIN_SALT_BYTES = 32;

/**
 * SHA-256 of (a secret salt, as lowercase hex || the UTF-8 bytes of a string), from node:crypto's one-shot
 * `hash()`: the auth cache is keyed by it on every request, and one call without a `Hash` object per digest
 * costs about a sixth of `createHash().update().digest()` (0.36 vs 2.2 us here). The salt goes in as hex so
 * that the whole input is one string whose UTF-8 bytes are exactly salt-hex || UTF-8(value) (raw salt bytes
 * above 0x7f would be re-encoded as two bytes each). test/auth/salted-sha256.test.ts checks it against createHash.
 */
export class SaltedSha256 {
  private readonly prefix: string;

  /** @throws Error when `salt` is shorter than 32 bytes. */
  constructor(salt: Buffer) {
    if (salt.length < MIN_SALT_BYTES) throw new Error(`The salt must be at least ${MIN_SALT_BYTES} bytes`);
    this.prefix = salt.toString('hex');
  }

  /** The 32-byte digest as a 32-character string (one byte per character): a compact Map key, not for display. */
  digest(value: string): string {
    return hash('sha256', this.prefix + value, 'binary');
  }
}
