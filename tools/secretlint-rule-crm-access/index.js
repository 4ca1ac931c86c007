'use strict';
/**
 * secretlint rule for crm-access credentials: access keys (`cak_`) and session tokens (`cas_`).
 *
 * Both are the prefix, 32 random base62 characters, and a 6-character base62 CRC32 of those 32 (the scheme
 * of src/access-keys/key-format.ts, GitHub's). A candidate is reported only when its checksum matches, so a
 * placeholder or a random lookalike (`cak_` followed by 38 letters) is not: about one in 57 billion random
 * strings would pass. The checksum is CRC-32 (IEEE) from node:zlib (Node 20.15+).
 */
const { crc32 } = require('node:zlib');

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
/** Not preceded or followed by another word character, so a longer identifier is not cut into a match. */
const CANDIDATE = /(?<![0-9A-Za-z_])(cak|cas)_([0-9A-Za-z]{32})([0-9A-Za-z]{6})(?![0-9A-Za-z_])/g;

/** CRC32 of the random part, as 6 base62 digits, most significant first. */
function checksum(randomPart) {
  let value = crc32(randomPart);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

/** Every checksum-valid credential in `text`: its kind, where it starts and ends. */
function findCredentials(text) {
  const found = [];
  for (const match of text.matchAll(CANDIDATE)) {
    const [whole, prefix, randomPart, check] = match;
    if (randomPart.length !== RANDOM_LENGTH || checksum(randomPart) !== check) continue;
    found.push({
      kind: prefix === 'cak' ? 'ACCESS_KEY' : 'SESSION_TOKEN',
      start: match.index,
      end: match.index + whole.length,
      value: whole,
    });
  }
  return found;
}

/** Only the prefix and the last four characters, so the report itself does not leak the secret. */
const hint = (value) => `${value.slice(0, 4)}...${value.slice(-4)}`;

const messages = {
  ACCESS_KEY: {
    en: (props) =>
      `found a crm-access access key (${props.HINT}): report it (reportLeakedAccessKey), which revokes it and issues a new one, then remove it from here`,
  },
  SESSION_TOKEN: {
    en: (props) =>
      `found a crm-access session token (${props.HINT}): report it (reportLeakedAccessKey), which ends that session, then remove it from here`,
  },
};

const creator = {
  messages,
  meta: {
    id: 'secretlint-rule-crm-access',
    recommended: true,
    type: 'scanner',
    supportedContentTypes: ['text'],
  },
  create(context) {
    const t = context.createTranslator(messages);
    return {
      file(source) {
        for (const credential of findCredentials(source.content)) {
          context.report({
            message: t(credential.kind, { HINT: hint(credential.value) }),
            range: [credential.start, credential.end],
          });
        }
      },
    };
  },
};

module.exports = { creator, findCredentials };
