// Live parts of the pages: a section marked data-refresh="N" reloads the page every N seconds
// (waiting answers, live alerts); a button marked data-print prints. Without scripts, the
// pages still work (a refresh link, the browser's print).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-refresh]");
  if (live) {
    const seconds = Number(live.getAttribute("data-refresh")) || 3;
    setTimeout(() => window.location.reload(), seconds * 1000);
  }
  for (const button of document.querySelectorAll("[data-print]")) {
    button.addEventListener("click", () => window.print());
  }
});
