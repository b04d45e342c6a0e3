// The management UI's only script: live refresh of marked regions, the
// progress of an Add appliance and new events (server-sent events), PEM
// files read into their text fields. Confirmations are pages of their own,
// so every page works without it.
"use strict";

(function () {
  // <section data-live="/url" data-every="3000">: the region's HTML is
  // replaced by the fragment at /url every few seconds while visible.
  function live(region) {
    var url = region.getAttribute("data-live");
    var every = parseInt(region.getAttribute("data-every") || "3000", 10);
    var status = document.getElementById(region.getAttribute("data-status") || "");
    var busy = false;
    function tick() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401 || r.status === 403) {
            // Signed out meanwhile: let the server say where to go.
            window.location.reload();
            throw new Error("signed out");
          }
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          region.innerHTML = html;
          if (status) { status.textContent = "Live · updated " + new Date().toLocaleTimeString(); }
        })
        .catch(function (e) {
          if (status) { status.textContent = "Live updates paused (" + e.message + "); retrying"; }
        })
        .then(function () { busy = false; });
    }
    setInterval(tick, every);
  }

  // <ol data-events="/add/progress/ID/events">: the steps of an Add, one
  // server-sent event "step" each ({html}, rendered and escaped by the
  // server), then "end" ({outcome}).
  function progress(list) {
    var url = list.getAttribute("data-events");
    var after = parseInt(list.getAttribute("data-count") || "0", 10);
    var waiting = document.getElementById("progress-waiting");
    var outcome = document.getElementById("progress-outcome");
    var source = new EventSource(url + "?after=" + after);
    source.addEventListener("step", function (e) {
      var item = document.createElement("li");
      item.innerHTML = JSON.parse(e.data).html;
      list.appendChild(item);
    });
    source.addEventListener("end", function (e) {
      source.close();
      if (waiting) { waiting.remove(); }
      if (outcome) { outcome.innerHTML = JSON.parse(e.data).outcome; }
    });
    source.onerror = function () {
      source.close();
      if (waiting) { waiting.textContent = "Connection lost; reload the page to see the rest."; }
    };
  }

  // <tbody data-stream="/events/stream?after=N">: each event recorded
  // from now on becomes the table's first row ({html}, rendered and escaped
  // by the server).
  function stream(body) {
    var source = new EventSource(body.getAttribute("data-stream"));
    source.addEventListener("audit", function (e) {
      var row = document.createElement("tr");
      row.innerHTML = JSON.parse(e.data).html;
      body.insertBefore(row, body.firstChild);
    });
  }

  // <input type="file" data-into="ID">: the chosen file's text goes into
  // the textarea ID (the form posts text; no upload encoding needed).
  function fileInto(input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.getAttribute("data-into"));
      var file = input.files && input.files[0];
      if (!target || !file) { return; }
      file.text().then(function (t) { target.value = t; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[type=file][data-into]").forEach(fileInto);
    document.querySelectorAll("tbody[data-stream]").forEach(stream);
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("ol[data-events]").forEach(progress);
  });
})();
