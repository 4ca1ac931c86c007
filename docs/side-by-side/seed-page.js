// node docs/side-by-side/seed-page.js <built checkout dir> <database url> <base64 secret>
// Migrates the database and seeds one organization of 1,000 users (admin + 999 members, each with a key), as
// `npm run bench` does; prints {"adminKey": ...}. For profiling the users page by hand.
require(process.argv[2] + '/node_modules/reflect-metadata');
const d = (m) => require(`${process.argv[2]}/dist/${m}`);
const { KeyCrypto } = d('src/access-keys/key-crypto');
const { SYSTEM_ACTOR } = d('src/audit/audit.service');
const { loadConfig } = d('src/config');
const { createDataSource } = d('src/db/data-source');
const { checkSecret } = d('src/db/runtime');
const { createLogger } = d('src/logger');
const { createServices } = d('src/server/services');
const { Role } = d('src/users/user.entity');
(async () => {
  const url = process.argv[3];
  const secret = Buffer.from(process.argv[4], 'base64');
  const config = loadConfig({ NODE_ENV: 'production', ACCESS_KEY_SECRET: process.argv[4] });
  const dataSource = createDataSource({ url, db: config.db });
  await dataSource.initialize();
  await dataSource.runMigrations();
  const keyCrypto = new KeyCrypto(secret);
  await checkSecret(dataSource, keyCrypto);
  const services = createServices({ dataSource, databaseUrl: url, keyCrypto, logger: createLogger({ level: 'warn' }), config });
  const tag = Math.random().toString(16).slice(2, 8);
  const admin = await services.organizations.createWithAdmin({
    name: `Prof ${tag}`, adminEmail: `admin-${tag}@bench.example`, adminName: 'Prof Admin', adminPassword: 'correct horse battery staple 1',
  });
  await dataSource.transaction(async (manager) => {
    for (let i = 0; i < 999; i++)
      await services.users.insert(manager, {
        organizationId: admin.organizationId, email: `user-${i}-${tag}@bench.example`,
        name: `User ${String(i).padStart(4, '0')}`, role: Role.MEMBER, actor: SYSTEM_ACTOR,
      });
  });
  await dataSource.destroy();
  console.log(JSON.stringify({ adminKey: admin.adminAccessKey }));
  process.exit(0);
})();
