import { randomUUID } from 'node:crypto';

import { Role } from '../../src/users/user.entity';
import type { TestApp } from '../helpers/test-app';

export interface TestUser {
  id: string;
  email: string;
  name: string;
  role: Role;
  key: string;
  organizationId: string;
  /** Set when the user was given one. */
  password?: string;
}

export const TEST_PASSWORD = 'correct horse battery staple';

export function uniqueEmail(label = 'user'): string {
  return `${label}-${randomUUID().slice(0, 8)}@example.test`;
}

/** An organization with its first admin, made the way the CLI makes one. */
export async function createOrganization(app: TestApp, name = 'Acme Clinic', password?: string): Promise<TestUser> {
  const email = uniqueEmail('admin');
  const created = await app.services.organizations.createWithAdmin({
    name,
    adminEmail: email,
    adminName: `Admin of ${name}`,
    adminPassword: password,
  });
  return {
    id: created.adminUserId,
    email,
    name: `Admin of ${name}`,
    role: Role.ADMIN,
    key: created.adminAccessKey,
    organizationId: created.organizationId,
    password,
  };
}

/** A user created by an admin through the API, with the key the admin reads on the profile. */
export async function createUser(
  app: TestApp,
  adminUser: TestUser,
  input: { role?: Role; name?: string; email?: string; password?: string } = {},
): Promise<TestUser> {
  const role = input.role ?? Role.MEMBER;
  const name = input.name ?? `${role.toLowerCase()} ${randomUUID().slice(0, 6)}`;
  const email = input.email ?? uniqueEmail(role.toLowerCase());
  const response = await app.gql<{ createUser: { id: string; accessKey: string } }>(
    `mutation ($input: CreateUserInput!) { createUser(input: $input) { id accessKey } }`,
    { key: adminUser.key, variables: { input: { email, name, role, password: input.password } } },
  );
  if (response.body.errors) throw new Error(`createUser failed: ${JSON.stringify(response.body.errors)}`);
  const { id, accessKey } = response.body.data!.createUser;
  return { id, email, name, role, key: accessKey, organizationId: adminUser.organizationId, password: input.password };
}

/** Signs the user in and returns the session token. */
export async function login(app: TestApp, user: { email: string; password?: string }): Promise<string> {
  const response = await app.gql<{ login: { token: string } }>(
    'mutation ($email: String!, $password: String!) { login(email: $email, password: $password) { token } }',
    { variables: { email: user.email, password: user.password ?? TEST_PASSWORD } },
  );
  if (response.body.errors) throw new Error(`login failed: ${JSON.stringify(response.body.errors)}`);
  return response.body.data!.login.token;
}
