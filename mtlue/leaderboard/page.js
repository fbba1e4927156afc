// The leaderboard page's sorting and filtering (mtlue.leaderboard.page). Without this script the
// page shows every table in full; nothing here fetches anything.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var status = document.getElementById("filter-status");
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.board"));

  function cellValue(row, index, numeric) {
    var text = row.cells[index].getAttribute("data-sort");
    if (text === null || text === "") return null;
    return numeric ? parseFloat(text) : text;
  }

  // Sort a ranking table by one column; the clean reference row stays first, empty values last,
  // equal values keep the ranking's order.
  function sortTable(table, index, numeric, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var pinned = rows.filter(function (row) { return row.classList.contains("reference"); });
    var ranked = rows.filter(function (row) { return !row.classList.contains("reference"); });
    ranked.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x === null || y === null) {
        if (x === y) return a.dataset.order - b.dataset.order;
        return x === null ? 1 : -1;
      }
      var order = numeric ? x - y : x.localeCompare(y);
      if (descending) order = -order;
      return order || a.dataset.order - b.dataset.order;
    });
    pinned.concat(ranked).forEach(function (row) { body.appendChild(row); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.ranking"), function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var descending = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        sortTable(table, index, th.dataset.numeric === "1", descending);
      });
    });
  });

  // The attacker's best defense among the chosen settings: mean over the chosen backbones and
  // weightings per defense, then the highest mean (the first defense listed on a tie).
  function selectedScore(settings, choice) {
    var sums = {}, counts = {}, order = [];
    settings.forEach(function (s) {
      if ((choice.backbone && s[0] !== choice.backbone) || (choice.weighting && s[1] !== choice.weighting) ||
          (choice.defense && s[2] !== choice.defense)) return;
      if (!(s[2] in sums)) { sums[s[2]] = 0; counts[s[2]] = 0; order.push(s[2]); }
      sums[s[2]] += s[3]; counts[s[2]] += 1;
    });
    var best = null;
    order.forEach(function (defense) {
      var mean = sums[defense] / counts[defense];
      if (best === null || mean > best.score) best = {score: mean, defense: defense};
    });
    return best;
  }

  function apply() {
    var choice = {};
    ["dataset", "protocol", "backbone", "weighting", "defense"].forEach(function (name) { choice[name] = form.elements[name].value; });
    var narrowed = Boolean(choice.backbone || choice.weighting || choice.defense);
    var shown = 0;
    sections.forEach(function (section) {
      var axes = JSON.parse(section.dataset.axes);
      var visible = (!choice.dataset || axes.dataset === choice.dataset) && (!choice.protocol || axes.name === choice.protocol) &&
        (!choice.backbone || axes.backbones.indexOf(choice.backbone) >= 0) &&
        (!choice.weighting || axes.weightings.indexOf(choice.weighting) >= 0) &&
        (!choice.defense || axes.defenses.indexOf(choice.defense) >= 0);
      section.hidden = !visible;
      if (!visible) return;
      shown += 1;
      Array.prototype.forEach.call(section.querySelectorAll("table.ranking [data-defense]"), function (cell) {
        cell.hidden = Boolean(choice.defense) && cell.dataset.defense !== choice.defense;
      });
      Array.prototype.forEach.call(section.querySelectorAll("table.ranking .selected-col"), function (cell) {
        cell.hidden = !narrowed;
      });
      if (!narrowed) return;
      var label = ["backbone", "weighting", "defense"].filter(function (n) { return choice[n]; })
        .map(function (n) { return n + " " + choice[n]; }).join(", ");
      section.querySelector("table.ranking th.selected-col button").textContent =
        "Score over " + label + " (not ranked)";
      Array.prototype.forEach.call(section.querySelectorAll("table.ranking tbody tr"), function (row) {
        var best = selectedScore(JSON.parse(row.dataset.settings), choice);
        var cell = row.querySelector(".selected-col");
        cell.textContent = best === null ? "n/a" : best.score.toFixed(2) + " (" + best.defense + ")";
        cell.setAttribute("data-sort", best === null ? "" : String(best.score));
      });
    });
    status.textContent = shown + " of " + sections.length + " board(s) shown" +
      (narrowed ? "; ranks are the whole protocol's, the extra column scores only the chosen settings" : "");
  }

  function openFromHash() {
    var target = window.location.hash && document.getElementById(decodeURIComponent(window.location.hash.slice(1)));
    if (target && target.tagName === "DETAILS") target.open = true;
  }

  form.hidden = false;
  form.addEventListener("change", apply);
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
  apply();
})();
