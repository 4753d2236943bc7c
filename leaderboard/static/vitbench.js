/* vitbench leaderboard: sortable tables and row filters. No dependencies; works from file:// and offline.
 * Cells carry their sort key in data-v (a number, or text); empty keys always sort last. The script reads
 * only attributes and never writes HTML (textContent only), so nothing from the page is ever parsed as markup. */
(function () {
  "use strict";

  function key(row, idx) {
    var cell = row.cells[idx];
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") { return null; }
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }

  function sortBy(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.cells, th);
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, idx), y = key(b, idx);
      if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return x < y ? -dir : (x > y ? dir : 0);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }

  function applyFilters(bar) {
    var table = document.getElementById(bar.getAttribute("data-for"));
    if (!table) { return; }
    var tests = [];
    bar.querySelectorAll(".vb-filter").forEach(function (el) {
      var k = el.getAttribute("data-key");
      if (el.type === "checkbox") {
        if (el.checked) { tests.push(function (r) { return r.getAttribute("data-" + k) === el.value; }); }
      } else if (el.value) {
        var want = el.value.toLowerCase();
        var exact = el.tagName === "SELECT";
        tests.push(function (r) {
          var have = (r.getAttribute("data-" + k) || "").toLowerCase();
          return exact ? have === want : have.indexOf(want) !== -1;
        });
      }
    });
    var shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function (r) {
      var ok = tests.every(function (t) { return t(r); });
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    var count = bar.querySelector(".count");
    if (count) { count.textContent = shown + " of " + rows.length + " rows"; }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable th[data-sort]").forEach(function (th) {
      var button = th.querySelector("button") || th;
      button.addEventListener("click", function () { sortBy(th); });
    });
    document.querySelectorAll(".filters").forEach(function (bar) {
      bar.querySelectorAll(".vb-filter").forEach(function (el) {
        el.addEventListener(el.tagName === "SELECT" || el.type === "checkbox" ? "change" : "input",
                            function () { applyFilters(bar); });
      });
      applyFilters(bar);
    });
  });
})();
