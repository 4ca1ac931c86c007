import type { ApolloServerPlugin } from '@apollo/server';

/**
 * An Apollo plugin (for startTestApp's `plugins`) that counts the operations whose execution started: Apollo asks
 * each plugin's `responseForOperation` in turn just before executing, and startTestApp's plugins come before the
 * one that may answer with graphql-jit (src/graphql/jit-execution.ts), which `executionDidStart` would not see.
 */
export function executionSpy(): { plugin: ApolloServerPlugin<any>; readonly executions: number } {
  let executions = 0;
  return {
    plugin: {
      async requestDidStart() {
        return {
          async responseForOperation() {
            executions++;
            return null;
          },
        };
      },
    },
    get executions() {
      return executions;
    },
  };
}
