import { Field, ObjectType } from 'type-graphql';

import { PageInfo } from '../graphql/pagination';
import { User } from './user.entity';

@ObjectType({ simpleResolvers: true })
export class UserEdge {
  @Field()
  cursor: string;

  @Field(() => User)
  node: User;
}

@ObjectType({ simpleResolvers: true })
export class UserConnection {
  @Field(() => [UserEdge])
  edges: UserEdge[];

  @Field(() => PageInfo)
  pageInfo: PageInfo;

  /** Counted only when asked for (see UserResolver.totalCount). */
  countTotal: () => Promise<number>;
}
