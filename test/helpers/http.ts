import http from 'node:http';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
}

/** A GraphQL POST from a chosen loopback source address (127.0.0.2, ...), so tests can be other clients. */
export function postFrom(params: {
  url: string;
  localAddress: string;
  query: string;
  headers?: Record<string, string>;
}): Promise<RawResponse> {
  const payload = JSON.stringify({ query: params.query });
  return new Promise((resolve, reject) => {
    const request = http.request(
      params.url,
      {
        method: 'POST',
        localAddress: params.localAddress,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          ...params.headers,
        },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: JSON.parse(text) }),
        );
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}
