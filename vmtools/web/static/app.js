// vm-web: the only script. A running plan's page polls its progress (no inline script: the
// Content-Security-Policy allows only this file). Text is set with textContent, never HTML.
"use strict";
(function () {
  var state = document.getElementById("job-state");
  if (!state || !/^\d+$/.test(state.dataset.job || "")) { return; }
  var lines = document.getElementById("job-lines");
  var url = "/job/" + state.dataset.job + ".json";
  var shown = state.textContent;
  function poll() {
    fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (view) {
      while (lines.children.length < view.lines.length) {
        var li = document.createElement("li");
        li.textContent = view.lines[lines.children.length];
        lines.appendChild(li);
      }
      state.textContent = view.state;
      if (view.state === "running" || view.state === "pending") {
        setTimeout(poll, 1000);
      } else if (shown === "running" || shown === "pending") {
        window.location.reload();      // the report is on the page now
      }
    }).catch(function () { setTimeout(poll, 3000); });
  }
  if (shown === "running" || shown === "pending") { setTimeout(poll, 500); }
})();
