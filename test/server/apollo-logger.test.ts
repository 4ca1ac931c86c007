import type { ApolloServerPlugin } from '@apollo/server';

import { startTestApp } from '../helpers/test-app';

/**
 * Apollo Server's own lines (its warnings, and "Unexpected error processing request" at error level) go through the
 * service's logger: JSON, with its redaction of credential-shaped text, not plain text on the console.
 */
describe("Apollo's logger is the service's", () => {
  it('a line Apollo writes is a JSON line of our logger, redacted', async () => {
    const probe: ApolloServerPlugin<any> = {
      async serverWillStart({ logger }) {
        logger.warn('apollo probe cak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
      },
    };
    const app = await startTestApp({ plugins: [probe], captureLogs: true, env: { LOG_LEVEL: 'warn' } });
    try {
      const line = app.logs.find((entry) => entry.includes('apollo probe'));
      expect(line).toBeDefined();
      const parsed = JSON.parse(line!) as { level: unknown; msg: string; component?: string };
      expect(parsed.component).toBe('apollo');
      expect(parsed.msg).not.toContain('cak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    } finally {
      await app.close();
    }
  });
});
