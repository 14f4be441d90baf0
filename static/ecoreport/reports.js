// A report's page while it is built: polls its status every two seconds, shows the step the
// build is at, and reloads once the report is issued or failed (its files and figures appear).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("report-progress");
    if (!box) { return; }
    var url = box.getAttribute("data-status-url");
    function poll() {
      fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (data.status === "issued" || data.status === "failed") {
            window.location.reload();
            return;
          }
          box.querySelector("[data-report-progress]").textContent =
            data.progress || "waiting for a worker";
          window.setTimeout(poll, 2000);
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 1000);
  });
})();
