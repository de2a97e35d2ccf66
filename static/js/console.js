// Console behaviour that used to sit in inline handlers: the Content-Security-Policy allows scripts only
// from our own static files, so pages mark elements with data- attributes and this file wires them up.
// Delegated listeners also cover fragments that htmx swaps in later.
"use strict";

document.addEventListener("change", (event) => {
  const field = event.target.closest("[data-autosubmit]");
  if (field && field.form) {
    field.form.submit();
  }
});

document.addEventListener("focusin", (event) => {
  const field = event.target.closest("[data-select-on-focus]");
  if (field) {
    field.select();
  }
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) {
    return;
  }
  const source = document.getElementById(button.dataset.copyTarget);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.value).then(() => {
      button.textContent = button.dataset.done;
    });
  }
});
