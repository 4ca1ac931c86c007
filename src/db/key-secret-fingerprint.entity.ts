import { Column, Entity, PrimaryColumn } from 'typeorm';

@Entity({ name: 'key_secret_fingerprint' })
export class KeySecretFingerprint {
  @PrimaryColumn({ type: 'boolean', default: true })
  id: boolean;

  @Column({ type: 'bytea' })
  fingerprint: Buffer;
}
