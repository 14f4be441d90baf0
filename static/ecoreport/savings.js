// The savings calculator updates its results without a reload, and the dashboards load their
// "top recommendations" after their own render (the savings engine is slower than the
// dashboards' queries). Without JavaScript the calculator's form submits and the page renders
// the same results on the server; the dashboards keep a link to the calculator.
(function () {
  "use strict";
  var DEBOUNCE_MS = 300;

  function loadFragments() {
    document.querySelectorAll("[data-fragment]").forEach(function (section) {
      var body = section.querySelector("[data-fragment-body]") || section;
      section.setAttribute("aria-busy", "true");
      fetch(section.getAttribute("data-fragment"), {
        credentials: "same-origin",
        headers: {"Accept": "text/html"}
      }).then(function (response) {
        // A redirect is the sign-in page (the session ended): keep the fallback link.
        if (!response.ok || response.redirected) { throw new Error("HTTP " + response.status); }
        return response.text();
      }).then(function (html) {
        body.innerHTML = html;
        section.setAttribute("data-loaded", "true");
      }).catch(function () {
        section.setAttribute("data-loaded", "failed");
      }).then(function () {
        section.removeAttribute("aria-busy");
      });
    });
  }

  function calculator() {
    var form = document.getElementById("savings-form");
    if (!form) { return; }
    var status = document.getElementById("savings-status");
    var results = document.getElementById("savings-results");
    var chart = document.getElementById("savings-chart");
    var timer = null;
    var controller = null;
    var sequence = 0;
    var lastQuery = params().toString();

    function params() {
      var query = new URLSearchParams();
      new FormData(form).forEach(function (value, name) {
        if (String(value).trim() !== "") { query.append(name, value); }
      });
      return query;
    }

    function showErrors(details) {
      form.querySelectorAll(".field-error").forEach(function (el) {
        var name = el.id.replace(/^error-/, "");
        var input = document.getElementById("a-" + name);
        var message = details && details[name];
        el.textContent = message || "";
        el.hidden = !message;
        if (input) {
          if (message) { input.setAttribute("aria-invalid", "true"); }
          else { input.removeAttribute("aria-invalid"); }
          input.closest(".field").classList.toggle("invalid", Boolean(message));
        }
      });
      var alert = document.getElementById("savings-errors");
      if (alert && !details) { alert.remove(); }
    }

    // The period picker is a form of its own: carry the calculator's state into it so that
    // changing the period keeps the scope and the assumptions.
    function syncPeriodForm(query) {
      var period = document.querySelector("form.period");
      if (!period) { return; }
      period.querySelectorAll("input[data-carried]").forEach(function (el) { el.remove(); });
      query.forEach(function (value, name) {
        if (name === "period" || name === "start" || name === "end") { return; }
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        input.setAttribute("data-carried", "");
        period.appendChild(input);
      });
    }

    function draw(figure, label) {
      var source = document.getElementById(chart.getAttribute("data-figure"));
      if (!source) {
        source = document.createElement("script");
        source.type = "application/json";
        source.id = chart.getAttribute("data-figure");
        document.body.appendChild(source);
      }
      source.textContent = JSON.stringify(figure);
      chart.hidden = false;
      chart.setAttribute("aria-label", label);
      if (!window.Plotly) { return; }
      // data-drawn="true" means the chart shows the figure in its source: not while redrawing.
      chart.removeAttribute("data-drawn");
      window.Plotly.react(chart, figure.data, figure.layout, {responsive: true, displaylogo: false})
        .then(function () { chart.setAttribute("data-drawn", "true"); });
    }

    function update(force) {
      var query = params();
      // A text input fires "input" while typing and "change" when left: one request is enough.
      if (!force && query.toString() === lastQuery) { return; }
      lastQuery = query.toString();
      var mine = ++sequence;
      if (controller) { controller.abort(); }
      controller = window.AbortController ? new AbortController() : null;
      status.textContent = "Updating…";
      results.setAttribute("aria-busy", "true");
      fetch(form.getAttribute("data-results") + "?" + query.toString(), {
        credentials: "same-origin",
        headers: {"Accept": "application/json"},
        signal: controller ? controller.signal : undefined
      }).then(function (response) {
        return response.json().then(function (body) { return {response: response, body: body}; });
      }).then(function (answer) {
        if (mine !== sequence) { return; }
        var body = answer.body;
        if (answer.response.ok) {
          showErrors(null);
          results.innerHTML = body.html;
          results.classList.remove("stale");
          draw(body.figure, body.chart.title + " (" + body.chart.unit + "), horizontal bar chart");
          var url = window.location.pathname + (body.query ? "?" + body.query : "");
          window.history.replaceState(null, "", url);
          syncPeriodForm(new URLSearchParams(body.query));
          status.textContent = "Results updated.";
        } else if (answer.response.status === 400) {
          showErrors(body.error.details || {});
          results.classList.add("stale");
          status.textContent = "Not updated: " + body.error.message +
            " The results shown are for the last valid inputs.";
        } else {
          status.textContent = "Not updated: " + ((body.error && body.error.message) ||
            "the server answered " + answer.response.status + ".");
        }
      }).catch(function (error) {
        if (error && error.name === "AbortError") { return; }
        if (mine === sequence) { lastQuery = null; }
        if (mine === sequence) { status.textContent = "Not updated: the server could not be reached."; }
      }).then(function () {
        if (mine === sequence) { results.removeAttribute("aria-busy"); }
      });
    }

    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () { update(false); }, DEBOUNCE_MS);
    }

    form.addEventListener("input", later);
    form.addEventListener("change", later);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      window.clearTimeout(timer);
      update(true);
    });
    syncPeriodForm(new URLSearchParams(form.getAttribute("data-query") || ""));
  }

  document.addEventListener("DOMContentLoaded", function () { loadFragments(); calculator(); });
})();
