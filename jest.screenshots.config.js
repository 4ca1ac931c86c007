/**
 * `npm run screenshots`: writes the README's screenshots (docs/screenshots/) with the browser tests' helpers and
 * database setup. Kept apart from `npm test`, which must never change a tracked file.
 * @type {import('jest').Config}
 */
const base = require('./jest.config');

module.exports = { ...base, roots: ['<rootDir>/scripts'], testMatch: ['**/screenshots.ts'], testTimeout: 120000 };
