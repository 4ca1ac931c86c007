import { isHeaderName } from '../src/header-name';

/** The rawHeaders scans (Host, Content-Type, credential headers) compare names with isHeaderName. */
describe('isHeaderName', () => {
  it.each([
    ['host', 'host'],
    ['Host', 'host'],
    ['HOST', 'host'],
    ['hOsT', 'host'],
    ['Content-Type', 'content-type'],
    ['X-Access-Key', 'x-access-key'],
    ['AUTHORIZATION', 'authorization'],
  ])('%s is %s', (name, lower) => {
    expect(isHeaderName(name, lower)).toBe(true);
  });

  it.each([
    ['Hosts', 'host'],
    ['hos', 'host'],
    ['Date', 'host'],
    ['Content_Type', 'content-type'],
    // Only A-Z fold: '[' (91) and '@' (64) sit next to them and must not pass for letters.
    ['@ost', 'host'],
    ['[ost', 'host'],
    ['x-access-kez', 'x-access-key'],
  ])('%s is not %s', (name, lower) => {
    expect(isHeaderName(name, lower)).toBe(false);
  });

  it('does the work of toLowerCase for every ASCII spelling', () => {
    for (let code = 32; code < 127; code++) {
      const name = `h${String.fromCharCode(code)}st`;
      expect(isHeaderName(name, 'host')).toBe(name.toLowerCase() === 'host');
    }
  });
});
