// Draws every figure the server embedded (a JSON script per chart) and keeps the period
// picker usable from the keyboard: custom dates show only for the "custom" preset.
(function () {
  "use strict";
  function drawAll() {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-figure"));
      if (!source || !window.Plotly) { return; }
      var fig = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false})
        .then(function () { el.setAttribute("data-drawn", "true"); });
    });
  }
  window.ecoreportDraw = drawAll;
  function periodPicker() {
    var select = document.getElementById("period-select");
    if (!select) { return; }
    var custom = document.querySelector(".period .custom");
    function sync() { custom.hidden = select.value !== "custom"; }
    select.addEventListener("change", function () {
      sync();
      if (select.value !== "custom") { select.form.submit(); }
    });
    sync();
    var group = document.getElementById("group-select");
    if (group) {
      group.addEventListener("change", function () { group.form.submit(); });
    }
  }
  document.addEventListener("DOMContentLoaded", function () { periodPicker(); drawAll(); });
})();
