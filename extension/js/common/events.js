// Transfer state changes, told to every extension page at once.
//
// The engine host posts `{id, state}` on this BroadcastChannel (extension
// origin only) whenever a transfer changes state; the popup and the bundle
// page refresh then, not at their next tick, so a download shows as finished
// the moment it is. Their timers still refresh the figures in between, and
// a message missed (a page opening, a host restarting) costs nothing but
// that tick's delay.
export const EVENTS = 'swarmdrop.events';

/**
 * Calls `fn({id, state})` for each change the host tells of; returns a
 * function that stops listening.
 */
export function onTransferChange(fn) {
  const channel = new BroadcastChannel(EVENTS);
  channel.onmessage = ({ data }) => {
    if (typeof data?.id === 'string' && typeof data?.state === 'string') fn(data);
  };
  return () => channel.close();
}

/** The host's side: a function that tells every page of one change. */
export function transferChangeTeller() {
  const channel = new BroadcastChannel(EVENTS);
  return ({ id, state }) => channel.postMessage({ id, state });
}
