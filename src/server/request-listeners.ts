import type { ApolloServerPlugin, BaseContext, GraphQLRequestListener } from '@apollo/server';

/** The request hooks a composed listener runs: each returns nothing, so running them in turn loses nothing. */
const COMPOSABLE_HOOKS = ['didResolveSource', 'didResolveOperation', 'didEncounterErrors', 'willSendResponse'] as const;
type ComposableHook = (typeof COMPOSABLE_HOOKS)[number];
type HookContext<C extends BaseContext, H extends ComposableHook> = Parameters<
  NonNullable<GraphQLRequestListener<C>[H]>
>[0];

/**
 * An Apollo request listener whose hooks may also return at once (no promise). Apollo awaits each stage's hooks
 * under a `Promise.all` of their results, which takes values as well as promises; and each of these four stages
 * runs inside an async function of Apollo's (the operation's one in a `try`). A hook that throws at once is
 * handed to Apollo as a rejection by requestListenersPlugin, so the stage ends exactly as with one that rejects
 * (the other plugins' hooks of the stage still run). A synchronous hook saves the promise and the microtask of an
 * `async` one on every request.
 */
export type SyncableRequestListener<C extends BaseContext> = {
  [H in ComposableHook]?: (context: HookContext<C, H>) => void | Promise<void>;
};

type Hook<C extends BaseContext> = (context: HookContext<C, ComposableHook>) => void | Promise<void>;

/** True for a promise or any other thenable a hook may return (what `await` would have waited for). */
function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === 'function';
}

/**
 * Runs `hooks` from `from` in order with `context`: at once while they return at once, and after each promise
 * once one returns a promise. Returns that promise, or undefined when every hook returned at once.
 * @throws whatever a synchronous hook throws (the later hooks do not run)
 */
function runInTurn<C extends BaseContext>(
  hooks: ReadonlyArray<Hook<C>>,
  context: HookContext<C, ComposableHook>,
  from: number,
): void | Promise<void> {
  for (let i = from; i < hooks.length; i++) {
    const result = hooks[i](context);
    if (isPromiseLike(result)) return Promise.resolve(result).then(() => runInTurn(hooks, context, i + 1));
  }
  return undefined;
}

/**
 * The one listener, made once at startup, that runs the hooks of `listeners` in their order: what each concern
 * does per request stays in its own module, and Apollo dispatches to a single listener.
 * Apollo calls every listener of every plugin at every stage (a `Promise.all` each, and `responseForOperation`
 * listener by listener), and that dispatch was the service's largest per-request allocation over the bare
 * stack (docs/performance.md). A hook that throws or rejects ends the stage with its error and the later
 * listeners' same hook does not run, as the first rejection wins under Apollo's `Promise.all`. Hooks that return
 * at once (see SyncableRequestListener) make the composed hook return at once too.
 * @throws Error at startup when a listener has a hook that returns something (those do not compose in turn)
 */
export function composeRequestListeners<C extends BaseContext>(
  listeners: ReadonlyArray<SyncableRequestListener<C> | GraphQLRequestListener<C>>,
): SyncableRequestListener<C> {
  for (const listener of listeners) {
    const other = Object.keys(listener).find((hook) => !(COMPOSABLE_HOOKS as readonly string[]).includes(hook));
    if (other) throw new Error(`requestListenersPlugin cannot compose the hook "${other}"`);
  }
  const composed: Partial<Record<ComposableHook, Hook<C>>> = {};
  for (const hook of COMPOSABLE_HOOKS) {
    const hooks = listeners.flatMap((listener) => {
      const run = (listener as SyncableRequestListener<C>)[hook] as Hook<C> | undefined;
      return run ? [run.bind(listener)] : [];
    });
    if (hooks.length === 0) continue;
    composed[hook] = (context) => {
      try {
        return runInTurn(hooks, context, 0);
      } catch (error) {
        // A rejection, not a throw: Apollo calls each listener's hook inside a `map` under `Promise.all`, and a
        // throw would end that `map`, so the plugins after this one would not see the stage at all.
        return Promise.reject(error as Error);
      }
    };
  }
  return composed as SyncableRequestListener<C>;
}

/** One Apollo plugin of the listeners composed by composeRequestListeners (see there). */
export function requestListenersPlugin<C extends BaseContext>(
  listeners: ReadonlyArray<SyncableRequestListener<C> | GraphQLRequestListener<C>>,
): ApolloServerPlugin<C> {
  return listenerPlugin(composeRequestListeners(listeners));
}

/**
 * An Apollo plugin of one listener made once at startup (see composeRequestListeners): `requestDidStart` hands
 * Apollo the listener itself, without a promise; Apollo awaits a `Promise.all` of the plugins' answers, which
 * takes a value as well as a promise.
 */
export function listenerPlugin<C extends BaseContext>(
  listener: SyncableRequestListener<C> | GraphQLRequestListener<C>,
): ApolloServerPlugin<C> {
  const requestDidStart = (() => listener) as unknown as NonNullable<ApolloServerPlugin<C>['requestDidStart']>;
  return { requestDidStart };
}
