// Transfer states: the one list the engine host moves between and the UI shows.
//
//   hashing ──► sharing            (a send: files are hashed, then shared)
//   downloading ──► complete       (a receive)
//   any running state ◄──► paused  (pause and resume; the state before the
//                                    pause is kept in `resumeState`)
//   hashing ──► needs-files        (the browser restarted and the files it was
//                                    reading are no longer reachable)
//   any ──► error

export const HASHING = 'hashing';
export const SHARING = 'sharing';
export const DOWNLOADING = 'downloading';
export const COMPLETE = 'complete';
export const PAUSED = 'paused';
export const NEEDS_FILES = 'needs-files';
export const ERROR = 'error';

const RUNNING = new Set([HASHING, SHARING, DOWNLOADING]);

export const LABELS = {
  [HASHING]: 'Preparing',
  [SHARING]: 'Sharing',
  [DOWNLOADING]: 'Downloading',
  [COMPLETE]: 'Complete',
  [PAUSED]: 'Paused',
  [NEEDS_FILES]: 'Needs files',
  [ERROR]: 'Error',
};

/** Whether a transfer in `state` is doing work (and keeps the engine host alive). */
export function isRunning(state) {
  return RUNNING.has(state);
}

export function canPause(state) {
  return RUNNING.has(state);
}

export function canResume(state) {
  return state === PAUSED;
}
