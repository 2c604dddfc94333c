// Firefox: what the UI does differently here (same exports as platform/chrome/ui.js).

/**
 * Firefox closes the toolbar popup when a file picker opens, so "Send
 * files…" opens the send page in a tab instead.
 */
export const pickerInPopup = false;
