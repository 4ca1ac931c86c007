import type { ApolloServerPlugin } from '@apollo/server';

/** An Apollo plugin (for startTestApp's `plugins`) that counts the operations whose execution started. */
export function executionSpy(): { plugin: ApolloServerPlugin<any>; readonly executions: number } {
  let executions = 0;
  return {
    plugin: {
      async requestDidStart() {
        return {
          async executionDidStart() {
            executions++;
          },
        };
      },
    },
    get executions() {
      return executions;
    },
  };
}
