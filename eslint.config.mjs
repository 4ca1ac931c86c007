// ESLint 9 flat config: JavaScript and typescript-eslint recommended rules, the few type-aware rules that
// catch real bugs in this code base at little cost (promises not awaited or awaited wrongly), and one import
// order (simple-import-sort). Formatting is Prettier's (`npm run format`), so eslint-config-prettier comes last.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import simpleImportSort from 'eslint-plugin-simple-import-sort';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const PG_MESSAGE =
  'Make connections with src/db/pg-client.ts: a Client without an error listener crashes the process when PostgreSQL restarts.';
/** The ways to make a pg connection (a Client, or a Pool that makes them) other than src/db/pg-client.ts. */
const PG_CONNECTIONS = [
  { name: 'pg', importNames: ['Client', 'Pool', 'default'], allowTypeImports: true, message: PG_MESSAGE },
  { name: 'pg-pool', allowTypeImports: true, message: PG_MESSAGE },
];
const TYPEORM_DATA_SOURCE = {
  name: 'typeorm',
  importNames: ['DataSource'],
  allowTypeImports: true,
  message:
    'Make the data source with createDataSource (src/db/data-source.ts): its connections survive PostgreSQL restarting.',
};

export default tseslint.config(
  { ignores: ['dist/', '**/node_modules/', 'docs/', 'coverage/', 'migrations/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // A pg Client made by hand has no 'error' listener, and PostgreSQL restarting then ends the process:
    // the service makes its connections with src/db/pg-client.ts (the embedded launcher listens itself), and
    // its one data source with createDataSource (src/db/data-source.ts), whose pool makes them so and whose
    // query runners keep a lost connection until they are done.
    files: ['src/**/*.ts'],
    ignores: ['src/db/pg-client.ts', 'src/dev/embedded-postgres.ts', 'src/db/data-source.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [...PG_CONNECTIONS, TYPEORM_DATA_SOURCE] }] },
  },
  {
    files: ['src/db/data-source.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: PG_CONNECTIONS }] },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    // Tests and benchmarks read GraphQL answers as JSON whose shape the assertions or checks themselves test.
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['public/**/*.js'],
    languageOptions: { globals: globals.browser, sourceType: 'module' },
  },
  {
    files: ['tools/**/*.js'],
    languageOptions: { globals: globals.node, sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Preloaded into a spawned server process with `node --require` (test/unhandled-rejections.test.ts).
    files: ['test/fixtures/**/*.js'],
    languageOptions: { globals: globals.node, sourceType: 'commonjs' },
  },
  {
    files: ['eslint.config.mjs'],
    languageOptions: { globals: globals.node },
  },
  {
    plugins: { 'simple-import-sort': simpleImportSort },
    rules: { 'simple-import-sort/imports': 'error', 'simple-import-sort/exports': 'error' },
  },
  prettier,
);
