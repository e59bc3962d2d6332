// Small helps on top of pages that work without JavaScript. Nothing here is required.
// - [data-confirm] buttons ask before a form with lasting effect is sent.
// - input[data-check-url] asks the server while typing (an IBAN, a BIC) and shows its answer
//   in the element named by aria-describedby's last id; the form is still checked on submit.
// - form[data-once]: its buttons are disabled once it is sent, so a double click sends it
//   once (the server books a money form once anyway, by its form id).
"use strict";
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  const form = event.target;
  if (form.hasAttribute("data-once")) {
    // after the browser took the form's values: a disabled button sends nothing
    setTimeout(() => {
      for (const once of form.querySelectorAll("button")) once.disabled = true;
    }, 0);
  }
});
// Back on a page the browser kept (the Back button): its forms can be sent again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const button of document.querySelectorAll("form[data-once] button")) {
    button.disabled = false;
  }
});
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-check-url]")) {
    const out = document.getElementById(input.getAttribute("data-check-target"));
    if (!out) continue;
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const form = input.form;
        const params = new URLSearchParams();
        for (const name of (input.getAttribute("data-check-fields") || input.name).split(",")) {
          const field = form.elements.namedItem(name);
          if (field) params.set(name, field.value);
        }
        try {
          const answer = await fetch(input.getAttribute("data-check-url") + "?" + params, {
            headers: { Accept: "application/json" }, credentials: "same-origin",
          });
          const body = await answer.json();
          out.textContent = body.message || "";
          out.className = body.ok ? "ok-text" : "error";
        } catch (_error) {
          out.textContent = "";
        }
      }, 300);
    });
  }
});
