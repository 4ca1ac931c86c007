import pino, { type Logger } from 'pino';

/** Header and field names that can carry a key, token or password; pino replaces their values. */
export const REDACTED_PATHS = [
  'req.headers["x-access-key"]',
  'req.headers.authorization',
  'headers["x-access-key"]',
  'headers.authorization',
  '*.password',
  '*.accessKey',
  '*.adminAccessKey',
];

/** Errors as pino writes them, minus SQL parameters (key digests, ciphertexts, token digests). */
function serializeError(error: Error): Record<string, unknown> {
  const serialized = pino.stdSerializers.err(error) as unknown as Record<string, unknown>;
  delete serialized.parameters;
  const driverError = serialized.driverError as Record<string, unknown> | undefined;
  if (driverError && typeof driverError === 'object') delete driverError.parameters;
  return serialized;
}

export function createLogger(params: { level: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    { level: params.level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, serializers: { err: serializeError } },
    params.destination,
  );
}
