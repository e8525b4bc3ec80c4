// SPDX-License-Identifier: MIT (Sijo's own code, like the rest of the package; no third-party script is vendored)
// The Console's own script (no inline script is allowed by its content security policy).
// Copy buttons: <button class="copy" data-copy="ELEMENT_ID"> copies that element's text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }
});
