import { Field, ObjectType } from 'type-graphql';

/** The page size of a connection when the caller gives no `first`. */
export const DEFAULT_PAGE_SIZE = 50;
/** The largest `first` a connection accepts: more is BAD_USER_INPUT, not a silent cut. */
export const MAX_PAGE_SIZE = 500;

/** Relay's page info, shared by every connection (users, audit events). */
@ObjectType({ simpleResolvers: true })
export class PageInfo {
  @Field()
  hasNextPage: boolean;

  @Field(() => String, { nullable: true })
  endCursor: string | null;
}
