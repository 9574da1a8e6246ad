// The console works without JavaScript; this only adds the ticket template's live preview, pages
// that refresh themselves (an order being worked on, the counts on Home and the orders list) and
// moving keyboard focus to the summary of what a form got wrong.
"use strict";

(function () {
  // After a refused form, the summary of its problems takes the focus (and the screen reader).
  const summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
  }
})();

(function () {
  // A table wider than the screen scrolls sideways: keyboard users reach it with Tab too.
  function scrollable() {
    for (const wrap of document.querySelectorAll(".table-wrap")) {
      if (wrap.scrollWidth > wrap.clientWidth) {
        wrap.tabIndex = 0;
      } else {
        wrap.removeAttribute("tabindex");
      }
    }
  }
  scrollable();
  window.addEventListener("resize", scrollable);
})();

(function () {
  const note = document.getElementById("live-note");
  if (!note) {
    return;
  }
  const calm = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function busy() {
    // Never reload under a person who is typing or choosing something.
    const active = document.activeElement;
    return Boolean(active && active.matches("input, textarea, select"));
  }

  function offerReload(text) {
    note.replaceChildren(document.createTextNode(text + " "));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Show the latest";
    button.addEventListener("click", function () {
      window.location.reload();
    });
    note.appendChild(button);
  }

  async function ask(url) {
    const answer = await fetch(url, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!answer.ok || !(answer.headers.get("Content-Type") || "").includes("json")) {
      throw new Error("no answer"); // logged out, or the server is away: stop asking
    }
    return answer.json();
  }

  if (note.dataset.statusUrl) {
    // An order being worked on: look again until it moves on, then show the new state.
    let seconds = Number(note.dataset.pollSeconds) || 2;
    const check = async function () {
      try {
        const status = await ask(note.dataset.statusUrl);
        if (status.fingerprint !== note.dataset.fingerprint) {
          if (calm || busy()) {
            offerReload("This order has moved on.");
            return;
          }
          window.location.reload();
          return;
        }
        if (status.settled) {
          return;
        }
        seconds = status.poll_seconds || seconds;
        window.setTimeout(check, seconds * 1000);
      } catch (error) {
        note.textContent = "";
      }
    };
    window.setTimeout(check, seconds * 1000);
    return;
  }

  if (note.dataset.countsUrl) {
    // Home and the orders list: the counts follow the orders; the lists say when they are older.
    const check = async function () {
      try {
        const found = await ask(note.dataset.countsUrl);
        let changed = false;
        for (const cell of document.querySelectorAll("[data-count]")) {
          const key = cell.dataset.count;
          // `shown` says "1000+" where the server stopped counting.
          const value = String(found.shown[key] || 0);
          if (cell.textContent !== value) {
            cell.textContent = value;
            changed = true;
          }
        }
        if (changed) {
          const time = new Date().toISOString().slice(11, 19);
          offerReload(`Counts updated at ${time} UTC; the lists on this page are older.`);
        }
        window.setTimeout(check, 10000);
      } catch (error) {
        // Stop: the page still works, just without fresh counts.
      }
    };
    window.setTimeout(check, 10000);
  }
})();

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
