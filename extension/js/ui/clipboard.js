// Copying a link, with a fallback for frames where the async clipboard is refused.
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (input) {
      input.focus();
      input.select();
      return document.execCommand('copy');
    }
    return false;
  }
}
