import net from 'node:net';

/** A TCP proxy a test can pause (a hung peer) or cut (a dropped network). */
export interface TcpProxy {
  readonly port: number;
  /** Stops forwarding in both directions but keeps every connection open; data waits in the proxy. */
  pause(): void;
  /** Forwards what waited, in order, and everything after it. */
  resume(): void;
  /** Drops every connection, and drops new ones at once, until `reconnect`. */
  disconnect(): void;
  /** Accepts connections again. */
  reconnect(): void;
  /**
   * From now on what a server sends waits in the proxy, and a server closing its side is passed on only after
   * it (requests still go through): with releaseReplies, several replies reach the client in one read.
   */
  holdReplies(): void;
  /** Writes what each server sent meanwhile to its client in one write, then closes those whose server closed. */
  releaseReplies(): void;
  /** How many server sides have closed so far. */
  readonly serversClosed: number;
  close(): Promise<void>;
}

/** `url` (a PostgreSQL URL) with its host and port replaced by the proxy's. */
export function throughProxy(proxy: TcpProxy, url: string): string {
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  return proxied.toString();
}

/** Starts a proxy on a free loopback port that forwards to `target`. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let paused = false;
  let cut = false;
  let holdingReplies = false;
  let serversClosed = 0;
  const held: Array<{ to: net.Socket; chunk: Buffer }> = [];
  const heldReplies = new Map<net.Socket, { chunks: Buffer[]; serverClosed: boolean }>();
  const sockets = new Set<net.Socket>();
  const forward = (to: net.Socket, chunk: Buffer) => {
    if (paused) held.push({ to, chunk });
    else if (!to.destroyed) to.write(chunk);
  };
  const dropAll = () => {
    for (const socket of sockets) socket.destroy();
  };
  const server = net.createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    const repliesOf = () => {
      let replies = heldReplies.get(client);
      if (!replies) heldReplies.set(client, (replies = { chunks: [], serverClosed: false }));
      return replies;
    };
    client.on('data', (chunk: Buffer) => forward(upstream, chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (holdingReplies) repliesOf().chunks.push(chunk);
      else forward(client, chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    let upstreamClosed = false;
    const serverEnded = () => {
      if (!upstreamClosed) serversClosed++;
      upstreamClosed = true;
      if (holdingReplies) repliesOf().serverClosed = true;
      else end();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', serverEnded).on('close', serverEnded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const { to, chunk } of held.splice(0)) if (!to.destroyed) to.write(chunk);
    },
    disconnect() {
      cut = true;
      held.length = 0;
      dropAll();
    },
    reconnect() {
      cut = false;
    },
    holdReplies() {
      holdingReplies = true;
    },
    releaseReplies() {
      holdingReplies = false;
      for (const [client, { chunks, serverClosed }] of heldReplies) {
        if (serverClosed) client.end(Buffer.concat(chunks));
        else client.write(Buffer.concat(chunks));
      }
      heldReplies.clear();
    },
    get serversClosed() {
      return serversClosed;
    },
    async close() {
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
