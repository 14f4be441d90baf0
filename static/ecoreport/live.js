// The live panel (templates/dashboards/_live.html): asks /fleet/live.json for the fleet's state
// every `refresh_s` seconds (LIVE_REFRESH_S) and updates the figures in place, no page reload.
(function () {
  "use strict";
  var number = new Intl.NumberFormat("en", {maximumFractionDigits: 0});
  function ago(seconds) {
    if (seconds === null || seconds === undefined) { return "never"; }
    if (seconds < 90) { return Math.round(seconds) + " s ago"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min ago"; }
    if (seconds < 172800) { return Math.round(seconds / 3600) + " h ago"; }
    return Math.round(seconds / 86400) + " days ago";
  }
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }
  function render(panel, data) {
    panel.querySelectorAll("[data-live]").forEach(function (el) {
      var value = data[el.getAttribute("data-live")];
      el.textContent = value === null || value === undefined ? "—" : number.format(value);
    });
    var body = panel.querySelector("[data-live-hosts]");
    if (body) {
      body.textContent = "";
      data.hosts.forEach(function (host) {
        var row = document.createElement("tr");
        var name = document.createElement("th");
        name.scope = "row";
        name.textContent = host.host;
        row.appendChild(name);
        row.appendChild(cell(ago(host.seconds_since)));
        row.appendChild(cell(host.status));
        if (host.offline) { row.className = "offline"; }
        body.appendChild(row);
      });
      if (!data.hosts.length) {
        var empty = document.createElement("tr");
        var td = cell("No hosts yet.");
        td.colSpan = 3;
        empty.appendChild(td);
        body.appendChild(empty);
      }
    }
    var updated = panel.querySelector("[data-live-updated]");
    updated.textContent = "(updated " + new Date().toLocaleTimeString("en-GB") + ")";
    panel.setAttribute("data-live-at", data.now);
  }
  function start(panel) {
    var url = panel.getAttribute("data-live-url");
    var delay = 10;
    function poll() {
      fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          delay = data.refresh_s || delay;
          render(panel, data);
        })
        .catch(function () {
          panel.querySelector("[data-live-updated]").textContent = "(not updating: retrying)";
        })
        .then(function () { window.setTimeout(poll, delay * 1000); });
    }
    poll();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.getElementById("live");
    if (panel) { start(panel); }
  });
})();
