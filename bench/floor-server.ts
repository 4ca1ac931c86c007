import { ApolloServer } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginLandingPageDisabled,
} from '@apollo/server/plugin/disabled';
import { fastifyApolloHandler } from '@as-integrations/fastify';
import Fastify from 'fastify';
import { buildSchema } from 'graphql';

/**
 * The bare stack that `npm run bench` measures next to the service: every request of the bench answered by
 * Apollo Server + Fastify + graphql-js with hand-written resolvers over constants, with Apollo's cache-control
 * and landing-page plugins off as in the service and nothing of the service itself (no database, key crypto,
 * type-graphql, logger or plugins of its own). Each scenario's ratio to this server's answer to the same
 * request is the share of the stack's own speed the service keeps. A key header other than `FLOOR_ACCESS_KEY`
 * is refused with a 401 before GraphQL, as the service refuses a malformed key; no header at all is let
 * through, so `{ __typename }` and a session's `me` (whose Authorization this server ignores) are answered.
 */
const schema = buildSchema(`
  enum Role { ADMIN MANAGER MEMBER }
  type User { id: ID! email: String! role: Role! accessKey: String }
  type UserEdge { cursor: String! node: User! }
  type UserConnection { edges: [UserEdge!]! }
  type Query { me: User! user(id: ID!): User users(first: Int): UserConnection! }
`);
const me = {
  id: '5f2783ca-bb90-4e50-9f30-78abe7af3343',
  email: 'admin@bench.example',
  role: 'ADMIN',
  accessKey: 'cak_0000000000000000000000000000000000000',
};
const page = Array.from({ length: 500 }, (_, i) => ({
  cursor: String(i),
  node: { ...me, id: `5f2783ca-bb90-4e50-9f30-${String(i).padStart(12, '0')}`, email: `user-${i}@bench.example` },
}));

async function main(): Promise<void> {
  const app = Fastify();
  const apollo = new ApolloServer({
    schema,
    rootValue: {
      me: () => me,
      user: () => me,
      users: ({ first }: { first?: number | null }) => ({ edges: page.slice(0, first ?? 50) }),
    },
    plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginCacheControlDisabled()],
  });
  await apollo.start();
  const accessKey = process.env.FLOOR_ACCESS_KEY;
  const graphql = fastifyApolloHandler(apollo);
  app.route({
    url: '/graphql',
    method: ['POST'],
    onRequest: (request, reply, done) => {
      const presented = request.headers['x-access-key'];
      if (presented === undefined || presented === accessKey) return done();
      void reply
        .code(401)
        .send({ errors: [{ message: 'The access key is malformed.', extensions: { code: 'UNAUTHENTICATED' } }] });
    },
    handler(request, reply) {
      return graphql.call(this, request as Parameters<typeof graphql>[0], reply as Parameters<typeof graphql>[1]);
    },
  });
  app.get('/readyz', async () => ({ status: 'ready' }));
  await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
  process.once('SIGTERM', () => void app.close().then(() => apollo.stop()));
}

void main();
