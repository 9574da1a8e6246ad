// The console works without JavaScript; this only adds the ticket template's live preview.
"use strict";

(function () {
  const form = document.getElementById("template-form");
  if (!form) {
    return;
  }
  const source = document.getElementById("source");
  const frame = document.getElementById("preview-frame");
  const summary = document.getElementById("preview-summary");
  const problems = document.getElementById("preview-problems");
  const url = form.dataset.previewUrl;
  let timer = null;
  let sequence = 0;

  function show(result) {
    summary.textContent = result.summary;
    frame.srcdoc = result.html;
    problems.replaceChildren();
    for (const text of result.problems) {
      const line = document.createElement("p");
      line.textContent = text;
      problems.appendChild(line);
    }
    problems.classList.toggle("hidden", result.problems.length === 0);
  }

  async function refresh() {
    const mine = ++sequence;
    const body = new FormData(form);
    try {
      const answer = await fetch(url, {
        method: "POST",
        body: body,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!answer.ok || mine !== sequence) {
        return;
      }
      show(await answer.json());
    } catch (error) {
      // Offline or the session ended: the Preview button still works.
    }
  }

  source.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  });
})();
