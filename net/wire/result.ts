/** What a wire codec reports instead of throwing: a parsed value or why the bytes were refused. */
export type WireError = 'truncated' | 'bad-checksum' | 'bad-length' | 'bad-version' | 'bad-option' | 'unsupported';

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: WireError };
