import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';

import { SaltedSha256 } from './salted-sha256';

const IV_BYTES = 12;

/**
 * Bytes at the start of every ciphertext of `KeyCrypto.encrypt` that tell its encryption from any other: the
 * IV, 12 random bytes drawn anew for each encryption (AES-GCM must never repeat one under a key; a repeat of
 * 96 random bits is not expected in 2^48 encryptions). Two ciphertexts of a key row are the same encryption
 * exactly when these bytes are equal: what a statement can compare instead of whole ciphertexts.
 */
export const ENCRYPTION_ID_BYTES = IV_BYTES;

/** The bytes of `ciphertext` that name its encryption (ENCRYPTION_ID_BYTES; a view of it, not a copy). */
export function encryptionIdOf(ciphertext: Buffer): Buffer {
  return ciphertext.subarray(0, ENCRYPTION_ID_BYTES);
}
const TAG_BYTES = 16;

/** Where aadOf writes a user id (UTF-8), and its views by length, made once: a page decrypts 100 keys. */
const AAD_SCRATCH = Buffer.alloc(256);
const AAD_VIEWS: Buffer[] = [];

/**
 * The associated data of a user's key: `userId` in UTF-8. Up to 85 characters (at most 255 bytes) it is written
 * into a buffer of this module and a view of it returned, not a new Buffer: only until the next call, which
 * is fine for setAAD, which reads it before returning.
 */
function aadOf(userId: string): Buffer {
  if (userId.length > 85) return Buffer.from(userId);
  const length = AAD_SCRATCH.write(userId, 0, 'utf8');
  return (AAD_VIEWS[length] ??= AAD_SCRATCH.subarray(0, length));
}

function subkey(secret: Buffer, purpose: string, bytes = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `crm-access ${purpose}`, bytes));
}

/**
 * Everything the service does with key material. The server secret is split by HKDF so that the lookup
 * digest, the encryption and the fingerprint never share a key.
 *
 * A keyring (ACCESS_KEY_SECRET as a list): this object is the current secret, `older` the ones before it,
 * newest first. New keys and tokens use the current secret only; lookups, reveals and the startup check also
 * accept the older ones until `rotate-secret` has moved every key off them (src/access-keys/secret-rotation.ts).
 */
export class KeyCrypto {
  // A KeyObject, so each digest does not import the raw key again (it is on every request's path).
  private readonly digestKey: KeyObject;
  private readonly encryptionKey: Buffer;
  private readonly cacheHash: SaltedSha256;
  /** Stored in the database so that startup can refuse a secret that cannot decrypt its keys. */
  readonly fingerprint: Buffer;
  /** The older secrets of the keyring, newest first (empty for a single secret). */
  readonly older: readonly KeyCrypto[];
  /** This secret's 64-byte key for opaque ids and cursors (src/graphql/opaque-ids.ts), by HKDF as the others. */
  private readonly opaqueIdKey: Buffer;

  constructor(secret: Buffer, olderSecrets: readonly Buffer[] = []) {
    this.older = olderSecrets.map((older) => new KeyCrypto(older));
    this.digestKey = createSecretKey(subkey(secret, 'key digest'));
    this.encryptionKey = subkey(secret, 'key encryption');
    this.cacheHash = new SaltedSha256(subkey(secret, 'cache key', 64));
    this.fingerprint = createHmac('sha256', subkey(secret, 'secret fingerprint')).update('v1').digest();
    this.opaqueIdKey = subkey(secret, 'opaque ids', 64);
  }

  /**
   * The keys of OpaqueIds (src/graphql/opaque-ids.ts), 64 bytes each, under every secret of the keyring, the
   * current one first: ids and cursors are made with the current secret and still open under the older ones.
   */
  opaqueIdKeys(): Buffer[] {
    return [this.opaqueIdKey, ...this.older.map((older) => older.opaqueIdKey)];
  }

  /** HMAC-SHA256 of a key or token: what lookups use; never reversible to the key. */
  digest(value: string): Buffer {
    return createHmac('sha256', this.digestKey).update(value).digest();
  }

  /** The digests of a key or token under every secret of the keyring, the current one first: what lookups match. */
  digests(value: string): Buffer[] {
    return [this.digest(value), ...this.older.map((older) => older.digest(value))];
  }

  /**
   * Salted SHA-256 of a key or token: what the in-process cache is keyed by. It runs on every request, so it is
   * one call of node:crypto's one-shot hash (see SaltedSha256); the salt keeps it apart from the lookup digest.
   */
  cacheKey(value: string): string {
    return this.cacheHash.digest(value);
  }

  /** AES-256-GCM with the owner's user id as associated data: a ciphertext moved to another row won't open. */
  encrypt(key: string, userId: string): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.encryptionKey, iv);
    cipher.setAAD(Buffer.from(userId));
    const body = Buffer.concat([cipher.update(key, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  /**
   * Opens `encrypt`'s output (12-byte IV, 16-byte tag, body) for the same `userId`.
   * @throws Error (node:crypto's "Unsupported state or unable to authenticate data") when the secret, the user id
   *   or a byte differs: a key that cannot be authenticated is never returned.
   */
  decrypt(ciphertext: Buffer, userId: string): string {
    const decipher = createDecipheriv('aes-256-gcm', this.encryptionKey, ciphertext.subarray(0, IV_BYTES));
    decipher.setAAD(aadOf(userId));
    decipher.setAuthTag(ciphertext.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    const body = decipher.update(ciphertext.subarray(IV_BYTES + TAG_BYTES));
    // GCM's final adds no bytes (it checks the tag, and throws when it does not authenticate).
    const last = decipher.final();
    return (last.length === 0 ? body : Buffer.concat([body, last])).toString('utf8');
  }

  /**
   * Decrypts with whichever secret of the keyring sealed the ciphertext (GCM's tag tells): the current one
   * first. Throws the current secret's error when none opens it.
   */
  decryptAny(ciphertext: Buffer, userId: string): string {
    try {
      return this.decrypt(ciphertext, userId);
    } catch (error) {
      for (const older of this.older) {
        try {
          return older.decrypt(ciphertext, userId);
        } catch {
          // not this one either
        }
      }
      throw error;
    }
  }

  /** The secret of the keyring whose fingerprint this is, if any. */
  withFingerprint(stored: Buffer): KeyCrypto | undefined {
    return [this, ...this.older].find(
      (crypto) => stored.length === crypto.fingerprint.length && timingSafeEqual(stored, crypto.fingerprint),
    );
  }

  /** True when the current secret or an older one of the keyring has this fingerprint. */
  matchesFingerprint(stored: Buffer): boolean {
    return this.withFingerprint(stored) !== undefined;
  }
}
