// Small helps on top of pages that work without JavaScript. Nothing here is required.
// - [data-confirm] buttons ask before a form with lasting effect is sent.
// - input[data-check-url] asks the server while typing (an IBAN, a BIC) and shows its answer
//   in the element named by aria-describedby's last id; the form is still checked on submit.
"use strict";
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
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
