(function () {
  "use strict";
  var open = function (on) {
    document.querySelectorAll("details").forEach(function (d) { d.open = on; });
  };
  window.addEventListener("beforeprint", function () { open(true); });

  // Hover tooltips over the detailed distribution plots, from their data- attributes.
  var tip = document.createElement("div");
  var band = null;
  tip.className = "tip";
  tip.hidden = true;
  document.body.appendChild(tip);
  var share = function (n, total) {
    return total ? parseFloat((100 * n / total).toPrecision(3)) + "%" : "—";
  };
  var hide = function () {
    tip.hidden = true;
    if (band) band.remove();
  };
  document.addEventListener("mousemove", function (event) {
    var svg = event.target.closest ? event.target.closest("svg[data-r]") : null;
    if (!svg) return hide();
    var d = svg.dataset, x = d.x.split(" ").map(Number), t = d.t.split(" ").map(Number);
    var r = d.r.split(" "), c = d.c.split(" ");
    var p = new DOMPoint(event.clientX, event.clientY).matrixTransform(
      svg.getScreenCTM().inverse());
    var i = Math.floor((p.x - x[0]) / (x[1] - x[0]) * r.length);
    if (i < 0 || i >= r.length) return hide();
    var name;
    if (d.e) {
      var e = d.e.split(" ");
      name = "[" + e[i] + ", " + e[i + 1] + (i === r.length - 1 ? "]" : ")");
    } else {
      name = JSON.parse(d.l)[i];
    }
    tip.textContent = name + "\nreference " + share(+r[i], t[0]) + " (" + r[i] + ")" +
      "\ncurrent " + share(+c[i], t[1]) + " (" + c[i] + ")";
    tip.hidden = false;
    tip.style.left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = event.clientY + 14 + "px";
    var step = (x[1] - x[0]) / r.length;
    if (!band) {
      band = document.createElementNS(svg.namespaceURI, "rect");
      band.setAttribute("class", "band");
    }
    band.setAttribute("x", x[0] + step * i);
    band.setAttribute("width", step);
    band.setAttribute("y", x[2]);
    band.setAttribute("height", x[3]);
    if (band.parentNode !== svg) svg.insertBefore(band, svg.firstChild);
  });

  var controls = document.getElementById("controls");
  if (!controls) return;
  var rows = document.querySelectorAll("#features > details");
  var filter = document.getElementById("filter");
  var only = document.getElementById("only-drifted");
  var shown = document.getElementById("shown");
  var expand = document.getElementById("expand");
  var apply = function () {
    var text = filter.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (row) {
      var keep = (!only.checked || row.dataset.drifted === "1") &&
        row.dataset.name.indexOf(text) !== -1;
      row.hidden = !keep;
      if (keep) n += 1;
    });
    shown.textContent = n + " of " + rows.length + " columns shown";
  };
  filter.addEventListener("input", apply);
  only.addEventListener("change", apply);
  expand.addEventListener("click", function () {
    var on = expand.textContent === "Expand all";
    rows.forEach(function (row) { if (!row.hidden) row.open = on; });
    expand.textContent = on ? "Collapse all" : "Expand all";
  });
  controls.hidden = false;
  apply();
})();
