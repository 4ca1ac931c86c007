/**
 * Header names compared without regard to letter case and without allocating: the scans of `rawHeaders` (Host,
 * Content-Type, the credential headers) run on every request, and `name.toLowerCase()` made a new string for every
 * name in another spelling than lower case, such as the `Host` and `Content-Type` that curl and browsers send.
 */

/** True when `name` is `lowerName` (given in lower case) in any letter case; lengths are compared first. */
export function isHeaderName(name: string, lowerName: string): boolean {
  if (name.length !== lowerName.length) return false;
  if (name === lowerName) return true;
  for (let index = 0; index < name.length; index++) {
    const code = name.charCodeAt(index);
    // A-Z (65-90) to a-z; a header name is ASCII (Node's parser refuses any other byte in it).
    if ((code >= 65 && code <= 90 ? code + 32 : code) !== lowerName.charCodeAt(index)) return false;
  }
  return true;
}
