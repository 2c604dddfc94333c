// Runtime messages: `{target, type, ...}` in, `{ok, value | error}` back.
//
// Extension pages and the engine host call `call(type, fields)`, which goes to
// the background; the background answers itself or forwards to the engine
// host (see js/background/router.js). Replies are JSON in Chrome, so no
// message carries file bytes: files travel by reference (js/common/handoff.js).
import { ext } from './ext.js';

/** Asks the background to handle `type`; resolves to the handler's value or throws its error. */
export async function call(type, fields = {}) {
  const reply = await ext.runtime.sendMessage({ ...fields, target: 'background', type });
  return unwrap(reply, type);
}

/**
 * How long a page of the UI waits for the engine before saying that it is not
 * answering. Longer than the engine host's own 10 s wait for a database
 * upgrade another page blocks (BLOCKED_WAIT_MS in src/web/idb_open.rs), so
 * that a host which can say what is wrong says it first.
 */
export const SILENT_MS = 15_000;

/** What the UI says when the engine has not answered within SILENT_MS. */
export const SILENT_TEXT =
  'The Swarmdrop engine is not answering. It may still be starting, or be stuck: try again, or reload the extension if it goes on.';

/**
 * `call(type, fields)`, calling `onSilent()` once if no answer has come
 * within SILENT_MS. The returned promise still settles with the answer,
 * however late it comes, so a page shows it when it lands.
 */
export function callNoting(type, fields, onSilent, silentMs = SILENT_MS) {
  const timer = setTimeout(onSilent, silentMs);
  const answer = call(type, fields);
  answer.finally(() => clearTimeout(timer)).catch(() => {});
  return answer;
}

/** Turns a `{ok, value | error}` reply into a value or a thrown Error. */
export function unwrap(reply, type) {
  if (reply === undefined || reply === null) {
    throw new Error(`no answer to ${type}`);
  }
  if (!reply.ok) {
    throw new Error(reply.error || `${type} failed`);
  }
  return reply.value;
}

/**
 * Runs `handler` for a message and sends back `{ok, value}` or `{ok:false, error}`.
 * Returns true so the runtime keeps the reply channel open while the handler runs.
 */
export function reply(promise, sendResponse) {
  Promise.resolve(promise).then(
    (value) => sendResponse({ ok: true, value }),
    (err) => sendResponse({ ok: false, error: err?.message ?? String(err) }),
  );
  return true;
}

/** Looks a message up in a table of handlers keyed by type; unknown types are refused. */
export async function dispatch(table, msg, sender) {
  const handler = Object.hasOwn(table, msg?.type) ? table[msg.type] : undefined;
  if (!handler) {
    throw new Error(`unknown message type: ${String(msg?.type)}`);
  }
  return handler(msg, sender);
}
