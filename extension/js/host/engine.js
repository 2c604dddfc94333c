// The wasm engine (src/web, built by build.sh into wasm/), loaded once per engine host.
import init, * as wasm from '../../wasm/swarmdrop.js';

let ready = null;

/** The engine's exports, once the module is instantiated. */
export function engine() {
  ready ??= init({ module_or_path: new URL('../../wasm/swarmdrop_bg.wasm', import.meta.url) }).then(
    () => wasm,
  );
  return ready;
}
