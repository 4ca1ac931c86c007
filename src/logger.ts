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

export function createLogger(params: { level: string; destination?: pino.DestinationStream }): Logger {
  return pino({ level: params.level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, params.destination);
}
