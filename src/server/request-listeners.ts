import type { ApolloServerPlugin, BaseContext, GraphQLRequestListener } from '@apollo/server';

/** The request hooks a composed listener runs: each returns nothing, so running them in turn loses nothing. */
const COMPOSABLE_HOOKS = ['didResolveSource', 'didResolveOperation', 'didEncounterErrors', 'willSendResponse'] as const;
type ComposableHook = (typeof COMPOSABLE_HOOKS)[number];
type HookContext<C extends BaseContext, H extends ComposableHook> = Parameters<
  NonNullable<GraphQLRequestListener<C>[H]>
>[0];

/**
 * One Apollo plugin whose one listener, made once at startup, runs the hooks of `listeners` in their order:
 * what each concern does per request stays in its own module, and Apollo dispatches to a single listener.
 * Apollo calls every listener of every plugin at every stage (a `Promise.all` each, and `responseForOperation`
 * listener by listener), and that dispatch was the service's largest per-request allocation over the bare
 * stack (docs/performance.md). A hook that throws ends the stage with its error and the later listeners' same
 * hook does not run, as the first rejection wins under Apollo's `Promise.all`.
 * @throws Error at startup when a listener has a hook that returns something (those do not compose in turn)
 */
export function requestListenersPlugin<C extends BaseContext>(
  listeners: ReadonlyArray<GraphQLRequestListener<C>>,
): ApolloServerPlugin<C> {
  for (const listener of listeners) {
    const other = Object.keys(listener).find((hook) => !(COMPOSABLE_HOOKS as readonly string[]).includes(hook));
    if (other) throw new Error(`requestListenersPlugin cannot compose the hook "${other}"`);
  }
  const composed: GraphQLRequestListener<C> = {};
  for (const hook of COMPOSABLE_HOOKS) {
    const hooks = listeners.flatMap((listener) => {
      const run = listener[hook] as ((context: HookContext<C, typeof hook>) => Promise<void>) | undefined;
      return run ? [run.bind(listener)] : [];
    });
    if (hooks.length === 0) continue;
    (composed[hook] as (context: HookContext<C, typeof hook>) => Promise<void>) =
      hooks.length === 1
        ? hooks[0]
        : async (context) => {
            for (const run of hooks) await run(context);
          };
  }
  return { requestDidStart: async () => composed };
}
