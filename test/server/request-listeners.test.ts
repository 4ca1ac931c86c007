import type { GraphQLRequestListener } from '@apollo/server';

import { requestListenersPlugin } from '../../src/server/request-listeners';

/** The composed listener that the plugin hands Apollo for every request. */
async function composed(listeners: GraphQLRequestListener<object>[]): Promise<GraphQLRequestListener<object>> {
  const plugin = requestListenersPlugin(listeners);
  return (await plugin.requestDidStart!({} as never)) as GraphQLRequestListener<object>;
}

describe('requestListenersPlugin', () => {
  it('runs each hook of the listeners in their order, and hands every request the same listener', async () => {
    const calls: string[] = [];
    const plugin = requestListenersPlugin<object>([
      {
        didResolveOperation: async () => void calls.push('a.resolve'),
        willSendResponse: async () => void calls.push('a.send'),
      },
      { willSendResponse: async () => void calls.push('b.send') },
      {
        didEncounterErrors: async () => void calls.push('c.errors'),
        willSendResponse: async () => void calls.push('c.send'),
      },
    ]);
    const first = (await plugin.requestDidStart!({} as never)) as GraphQLRequestListener<object>;
    const second = await plugin.requestDidStart!({} as never);
    expect(second).toBe(first);
    await first.didResolveOperation!({} as never);
    await first.didEncounterErrors!({} as never);
    await first.willSendResponse!({} as never);
    expect(calls).toEqual(['a.resolve', 'c.errors', 'a.send', 'b.send', 'c.send']);
    expect(first.didResolveSource).toBeUndefined();
  });

  it('ends a stage at the first hook that throws, with its error', async () => {
    const calls: string[] = [];
    const listener = await composed([
      { didResolveOperation: async () => void calls.push('first') },
      {
        didResolveOperation: async () => {
          throw new Error('refused');
        },
      },
      { didResolveOperation: async () => void calls.push('third') },
    ]);
    await expect(listener.didResolveOperation!({} as never)).rejects.toThrow('refused');
    expect(calls).toEqual(['first']);
  });

  it('returns at once while the hooks do, and waits for a hook that returns a promise before the next', async () => {
    const calls: string[] = [];
    const listener = await composed([
      { willSendResponse: (() => void calls.push('sync 1')) as never },
      { willSendResponse: (() => void calls.push('sync 2')) as never },
    ]);
    expect(listener.willSendResponse!({} as never)).toBeUndefined();
    expect(calls).toEqual(['sync 1', 'sync 2']);

    calls.length = 0;
    let release!: () => void;
    const mixed = await composed([
      { willSendResponse: (() => void calls.push('sync')) as never },
      {
        willSendResponse: () =>
          new Promise<void>((resolve) => {
            calls.push('async started');
            release = () => {
              calls.push('async done');
              resolve();
            };
          }),
      },
      { willSendResponse: (() => void calls.push('after')) as never },
    ]);
    const pending = mixed.willSendResponse!({} as never);
    expect(pending).toBeInstanceOf(Promise);
    expect(calls).toEqual(['sync', 'async started']);
    release();
    await pending;
    expect(calls).toEqual(['sync', 'async started', 'async done', 'after']);
  });

  it('ends a stage at the first synchronous hook that throws, handing Apollo a rejection (so other plugins still see the stage)', async () => {
    const calls: string[] = [];
    const listener = await composed([
      { didResolveOperation: (() => void calls.push('first')) as never },
      {
        didResolveOperation: (() => {
          throw new Error('refused at once');
        }) as never,
      },
      { didResolveOperation: (() => void calls.push('third')) as never },
    ]);
    await expect(listener.didResolveOperation!({} as never)).rejects.toThrow('refused at once');
    expect(calls).toEqual(['first']);
  });

  it('refuses at startup a hook that returns something (it would not compose in turn)', () => {
    expect(() => requestListenersPlugin([{ responseForOperation: async () => null }])).toThrow(
      'cannot compose the hook "responseForOperation"',
    );
    expect(() => requestListenersPlugin([{ executionDidStart: async () => undefined }])).toThrow('executionDidStart');
  });
});
