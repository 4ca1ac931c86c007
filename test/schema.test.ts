import fs from 'node:fs';
import path from 'node:path';

import { printSchema } from 'graphql';

import { buildAppSchema } from '../src/server/schema';

const SCHEMA_FILE = path.join(__dirname, '..', 'schema.graphql');

describe('schema.graphql', () => {
  it('is the schema the resolvers emit (rewritten when stale, so commit the new file)', async () => {
    const emitted = printSchema(await buildAppSchema()) + '\n';
    const committed = fs.existsSync(SCHEMA_FILE) ? fs.readFileSync(SCHEMA_FILE, 'utf8') : '';
    if (committed !== emitted) fs.writeFileSync(SCHEMA_FILE, emitted);
    expect(committed).toBe(emitted);
  });

  it('describes every query and mutation', async () => {
    const schema = await buildAppSchema();
    const fields = [schema.getQueryType()!, schema.getMutationType()!].flatMap((type) =>
      Object.values(type.getFields()).map((field) => ({
        name: `${type.name}.${field.name}`,
        description: field.description,
      })),
    );
    expect(fields.filter((field) => !field.description?.trim()).map((field) => field.name)).toEqual([]);
  });
});
