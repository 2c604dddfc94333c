// The WebExtension namespace: `browser` in Firefox, `chrome` in Chrome (both promise-based in MV3).
export const ext = globalThis.browser ?? globalThis.chrome;
