import { Field, ID, Int, ObjectType } from 'type-graphql';
import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

@ObjectType({ description: 'A tenant: one CRM instance with its users.', simpleResolvers: true })
@Entity({ name: 'organizations' })
export class Organization {
  @Field(() => ID)
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Field()
  @Column({ type: 'text' })
  name: string;

  @Column({ name: 'is_active', type: 'boolean', default: true })
  isActive: boolean;

  @Field()
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Field(() => Int, {
    nullable: true,
    description:
      'Access keys expire this many days after they are issued; null: never. Admins set it with setAccessKeyPolicy.',
  })
  @Column({ name: 'max_key_age_days', type: 'integer', nullable: true })
  maxKeyAgeDays: number | null;
}
