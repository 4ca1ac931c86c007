import { Column, Entity, PrimaryColumn } from 'typeorm';

/** One row per user (the primary key is the user id). The plaintext key is never stored. */
@Entity({ name: 'access_keys' })
export class AccessKey {
  @PrimaryColumn({ name: 'user_id', type: 'uuid' })
  userId: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ name: 'key_digest', type: 'bytea' })
  keyDigest: Buffer;

  @Column({ name: 'key_ciphertext', type: 'bytea' })
  keyCiphertext: Buffer;

  @Column({ name: 'key_hint', type: 'text' })
  keyHint: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Column({ name: 'created_by', type: 'uuid', nullable: true })
  createdBy: string | null;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null;

  @Column({ name: 'previous_key_digest', type: 'bytea', nullable: true })
  previousKeyDigest: Buffer | null;

  @Column({ name: 'previous_key_expires_at', type: 'timestamptz', nullable: true })
  previousKeyExpiresAt: Date | null;

  /** Last use of the previous key during its grace period (its last use as the current key until then). */
  @Column({ name: 'previous_key_last_used_at', type: 'timestamptz', nullable: true })
  previousKeyLastUsedAt: Date | null;

  /** The latest leak report of this user's keys (see LeakReportService); kept after later regenerations. */
  @Column({ name: 'leak_reported_at', type: 'timestamptz', nullable: true })
  leakReportedAt: Date | null;

  @Column({ name: 'leak_report_location', type: 'text', nullable: true })
  leakReportLocation: string | null;

  @Column({ name: 'leak_report_source', type: 'text', nullable: true })
  leakReportSource: string | null;

  @Column({ name: 'leaked_key_hint', type: 'text', nullable: true })
  leakedKeyHint: string | null;

  /** When the current key stops working (its organization's maxKeyAgeDays); null: never. */
  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt: Date | null;

  /** Fingerprint of the master secret this row's key is encrypted and digested under (see rotate-secret). */
  @Column({ name: 'secret_fingerprint', type: 'bytea', nullable: true })
  secretFingerprint: Buffer | null;
}
