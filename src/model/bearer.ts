/** The TCP listeners' bearer token check (the API's, the web view's). Pure. */

/** Whether an Authorization header is `Bearer <token>`, compared in constant time (the token is
 * a secret; the header is the caller's). */
export function bearerMatches(header: string | undefined | null, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? "");
  if (got.length !== want.length) return false;
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff |= (want[i] as number) ^ (got[i] as number);
  return diff === 0;
}
