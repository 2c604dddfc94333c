// Chrome: what the UI does differently here (same exports as platform/firefox/ui.js).

/** The popup can open a file picker and stay open while it is shown. */
export const pickerInPopup = true;
