import { ApolloServer } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginLandingPageDisabled,
} from '@apollo/server/plugin/disabled';
import { fastifyApolloHandler } from '@as-integrations/fastify';
import Fastify from 'fastify';
import { buildSchema } from 'graphql';

/**
 * The framework floor that `npm run bench` measures next to the service: the bench's `me` query on Apollo
 * Server + Fastify + graphql-js, with Apollo's cache-control and landing-page plugins off as in the service
 * and nothing of the service itself (no authentication, type-graphql, logger or plugins of its own). What
 * its `me` costs over its own `{ __typename }` is what executing that query costs before any of our work;
 * `npm run bench` adds it to the service's baseline to show what `me` would measure if our work cost nothing.
 */
const schema = buildSchema(`
  enum Role { ADMIN MANAGER MEMBER }
  type User { id: ID! email: String! role: Role! }
  type Query { me: User! }
`);
const me = { id: '5f2783ca-bb90-4e50-9f30-78abe7af3343', email: 'admin@bench.example', role: 'ADMIN' };

async function main(): Promise<void> {
  const app = Fastify();
  const apollo = new ApolloServer({
    schema,
    rootValue: { me: () => me },
    plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginCacheControlDisabled()],
  });
  await apollo.start();
  app.route({ url: '/graphql', method: ['POST'], handler: fastifyApolloHandler(apollo) });
  app.get('/readyz', async () => ({ status: 'ready' }));
  await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
  process.once('SIGTERM', () => void app.close().then(() => apollo.stop()));
}

void main();
