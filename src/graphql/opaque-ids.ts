import { type Cipher, createCipheriv, createDecipheriv, createHmac, type Decipher, timingSafeEqual } from 'node:crypto';

/** A bigint row key (PostgreSQL `bigint`, never negative here) as 8 big-endian bytes: the block's first half. */
const KEY_BYTES = 8;
/** The block's second half: a check value of the scope, what a forged or misplaced token fails on. */
const CHECK_BYTES = 8;
const BLOCK_BYTES = KEY_BYTES + CHECK_BYTES;
/** base64url of one 16-byte block: 22 characters, no padding (the last one carries 2 unused bits). */
const TOKEN = /^[A-Za-z0-9_-]{22}$/;

/**
 * What a token is bound to besides its row key: which kind of row (`purpose`, so an id of one table never opens
 * as another's) and the organization it is shown to (so a token of one tenant never opens for another).
 */
export interface TokenScope {
  readonly purpose: string;
  readonly organizationId: string;
}

/** The tokens of one scope (OpaqueIds.forScope): what a page of rows encodes its ids and cursors with. */
export interface ScopedIds {
  /**
   * The token of row key `key` (a decimal bigint string, 0 to 2^63-1, as PostgreSQL's `id::text`).
   * @throws SyntaxError or RangeError (BigInt, Buffer) when `key` is not such a number: a bug, not client input.
   */
  encode(key: string): string;
  /**
   * The row key (a decimal string) of a token `encode` made for this scope under any secret of the keyring, or
   * null when `token` is not one: wrong shape, altered, made for another organization or purpose, or under a
   * secret no longer in the keyring. Callers turn null into their BAD_USER_INPUT.
   */
  decode(token: string): string | null;
}

/** One secret's block cipher, both ways, and the MAC key of the check values. */
interface TokenKeys {
  readonly encipher: Cipher;
  readonly decipher: Decipher;
  readonly mac: Buffer;
}

/**
 * Opaque, unforgeable tokens for row keys that come from one service-wide sequence (audit_events.id): what ids
 * and cursors show clients instead of the number. The number leaks other tenants' activity: the difference of
 * two consecutive events of one organization counts every other organization's events written between them.
 *
 * The scheme is encode-then-encipher (Bellare and Rogaway, "Encode-then-encipher encryption", ASIACRYPT 2000):
 * token = base64url(AES-256(key, rowKey as 8 bytes || check)), check = the first 8 bytes of
 * HMAC-SHA256(macKey, purpose, organization). AES on one block is a pseudorandom permutation, so a token says
 * nothing of its number and consecutive rows give unrelated tokens; it is deterministic, so one row shows one
 * id on every read (ids must be stable). A token altered, forged or made for another organization or purpose
 * deciphers to a block whose second half is not the scope's check: refused, but for a 2^-64 chance per try
 * (and even then it only moves a page boundary inside the caller's own rows: queries stay scoped in SQL).
 * Why not AES-GCM: a random nonce makes ids unstable, a fixed one breaks GCM. Why not SIV (HMAC tag as the
 * CTR IV), which node:crypto composes too: it needs a new cipher and HMAC per token, about 6 times the cost of
 * one block here (docs/performance.md, "Opaque audit event ids").
 * The cipher objects are made once and kept: ECB without padding enciphers each 16 bytes given to `update` on
 * its own, with no state between calls, and JavaScript runs one call at a time.
 *
 * Keys: derived by HKDF from each secret of ACCESS_KEY_SECRET's keyring (KeyCrypto.opaqueIdKeys). Tokens are
 * made with the current secret and opened with any of the keyring, so cursors handed out before a rotation
 * keep working until the old secret leaves the keyring; after that they are BAD_USER_INPUT (start from the
 * first page). Ids are made with the current secret, so an event's id changes once when a new secret becomes
 * current: no operation takes an audit event id as input, only clients comparing ids across it notice.
 */
export class OpaqueIds {
  private readonly keyring: readonly TokenKeys[];

  /**
   * @param secrets 64-byte keys, the current first, then older ones (KeyCrypto.opaqueIdKeys): bytes 0-31 key
   *   the cipher, 32-63 the check values' MAC.
   * @throws RangeError when there is no key or a key is not 64 bytes.
   */
  constructor(secrets: readonly Buffer[]) {
    if (secrets.length === 0) throw new RangeError('OpaqueIds needs at least one key.');
    this.keyring = secrets.map((secret) => {
      if (secret.length !== 64) throw new RangeError('An OpaqueIds key is 64 bytes.');
      const cipherKey = secret.subarray(0, 32);
      const encipher = createCipheriv('aes-256-ecb', cipherKey, null).setAutoPadding(false);
      const decipher = createDecipheriv('aes-256-ecb', cipherKey, null).setAutoPadding(false);
      return { encipher, decipher, mac: Buffer.from(secret.subarray(32)) };
    });
  }

  /** The tokens of `scope` (one HMAC per secret of the keyring, then one AES block per token). */
  forScope(scope: TokenScope): ScopedIds {
    // Purpose and organization id are NUL-terminated, so no two scopes feed the HMAC the same bytes.
    const checks = this.keyring.map((keys) =>
      createHmac('sha256', keys.mac)
        .update(`${scope.purpose}\0${scope.organizationId}\0`)
        .digest()
        .subarray(0, CHECK_BYTES),
    );
    const [current] = this.keyring;
    return {
      encode: (key) => {
        const block = Buffer.allocUnsafe(BLOCK_BYTES);
        block.writeBigInt64BE(BigInt(key));
        checks[0].copy(block, KEY_BYTES);
        return current.encipher.update(block).toString('base64url');
      },
      decode: (token) => {
        if (!TOKEN.test(token)) return null;
        const block = Buffer.from(token, 'base64url');
        // One string per block: a last character differing only in its 2 unused bits is not the same token.
        if (block.toString('base64url') !== token) return null;
        for (const [index, keys] of this.keyring.entries()) {
          const plain = keys.decipher.update(block);
          if (timingSafeEqual(plain.subarray(KEY_BYTES), checks[index])) {
            const key = plain.readBigInt64BE();
            return key >= 0n ? key.toString() : null;
          }
        }
        return null;
      },
    };
  }
}
