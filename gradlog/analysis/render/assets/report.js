// gradlog's HTML report: draws each run's charts from the page's JSON data, shows exact values
// on hover, zooms every chart of a run to a dragged range (double-click resets), and sorts the
// runs table by a clicked header. Text from the data is set with textContent, never as markup.
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(String(e.message));
    document.documentElement.setAttribute("data-errors", errors.join(" | "));
  });
  var SVG = "http://www.w3.org/2000/svg";
  var W = 760, H = 240, L = 64, R = 12, T = 10, B = 34;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function tick(v) {  // a label: 0.05, 200, 1e12
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential().replace("e+", "e");
    return String(Number(v.toPrecision(6)));
  }
  function logTicks(lo, hi) {
    var out = [], e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    var steps = e1 - e0 <= 2 ? [1, 2, 5] : [1];
    var every = Math.max(1, Math.ceil((e1 - e0) / 8));  // at most about 8 labelled decades
    for (var e = e0; e <= e1; e += every) {
      for (var i = 0; i < steps.length; i++) {
        var v = steps[i] * Math.pow(10, e);
        if (v >= lo && v <= hi) out.push(v);
      }
    }
    return out;
  }
  function linTicks(lo, hi) {
    var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / 5)));
    if (span / step > 12) step *= 5; else if (span / step > 6) step *= 2;
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(v);
    return out;
  }

  function Chart(box, chart, run, axis) {
    this.box = box; this.chart = chart; this.run = run; this.axis = axis;
    var xs = [];
    chart.series.forEach(function (s) { xs = xs.concat(s.x); });
    this.full = [Math.min.apply(null, xs), Math.max.apply(null, xs)];
    if (this.full[0] === this.full[1]) this.full = [this.full[0] - 1, this.full[1] + 1];
    this.svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img" }, box);
    this.tip = document.createElement("div");
    this.tip.className = "tip";
    box.appendChild(this.tip);
    this.bind();
  }
  Chart.prototype.draw = function (x0, x1) {
    var c = this.chart, svg = this.svg, self = this;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var lo = Math.log10(c.range[0]), hi = Math.log10(c.range[1]);
    this.x0 = x0; this.x1 = x1;
    this.box.setAttribute("data-zoom", x0 + ":" + x1);
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return T + (hi - Math.log10(y)) / (hi - lo) * (H - T - B); };
    this.sx = sx; this.sy = sy;
    var clip = "clip-" + this.box.id;
    var defs = el("defs", {}, svg);
    el("rect", { x: L, y: T, width: W - L - R, height: H - T - B }, el("clipPath", { id: clip }, defs));
    var plot = el("g", { "clip-path": "url(#" + clip + ")" }, svg);
    c.bands.forEach(function (b) {
      var top = sy(Math.min(b[1] === null ? c.range[1] : b[1], c.range[1]));
      var bottom = sy(Math.max(b[0] === null ? c.range[0] : b[0], c.range[0]));
      if (bottom > top) el("rect", { x: L, y: top, width: W - L - R, height: bottom - top, class: "band " + b[2] }, plot);
    });
    logTicks(c.range[0], c.range[1]).forEach(function (v) {
      el("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid" }, svg);
      el("text", { x: L - 6, y: sy(v) + 4, class: "tick", "text-anchor": "end" }, svg).textContent = tick(v);
    });
    linTicks(x0, x1).forEach(function (v) {
      el("line", { x1: sx(v), x2: sx(v), y1: H - B, y2: H - B + 4, class: "axis" }, svg);
      el("text", { x: sx(v), y: H - B + 16, class: "tick", "text-anchor": "middle" }, svg).textContent = tick(v);
    });
    el("text", { x: W - R, y: H - 4, class: "tick", "text-anchor": "end" }, svg).textContent = this.axis;
    el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "frame" }, svg);
    if (this.run.collapse !== null) {
      var cx = sx(this.run.collapse);
      el("line", { x1: cx, x2: cx, y1: T, y2: H - B, class: "collapse" }, plot);
    }
    c.series.forEach(function (s, k) {
      var d = "", pen = false;
      for (var i = 0; i < s.x.length; i++) {
        if (s.y[i] === null) { pen = false; continue; }
        d += (pen ? "L" : "M") + sx(s.x[i]).toFixed(1) + " " + sy(s.y[i]).toFixed(1);
        pen = true;
      }
      el("path", { d: d, class: "line s" + (k % 8) }, plot);
      if (s.x.length <= 200) {
        for (var j = 0; j < s.x.length; j++) {
          if (s.y[j] !== null) el("circle", { cx: sx(s.x[j]), cy: sy(s.y[j]), r: 2.2, class: "dot s" + (k % 8) }, plot);
        }
      }
    });
    this.cursor = el("line", { x1: 0, x2: 0, y1: T, y2: H - B, class: "cursor" }, svg);
    this.sel = el("rect", { x: 0, y: T, width: 0, height: H - T - B, class: "selection" }, svg);
    self.cursor.setAttribute("visibility", "hidden");
    self.sel.setAttribute("visibility", "hidden");
  };
  Chart.prototype.xAt = function (event) {
    var box = this.svg.getBoundingClientRect();
    var px = (event.clientX - box.left) / box.width * W;
    return this.x0 + (px - L) / (W - L - R) * (this.x1 - this.x0);
  };
  Chart.prototype.hover = function (x) {
    var c = this.chart, tip = this.tip, lines = [];
    var near = null;
    c.series.forEach(function (s) {
      var best = -1;
      for (var i = 0; i < s.x.length; i++) {
        if (best < 0 || Math.abs(s.x[i] - x) < Math.abs(s.x[best] - x)) best = i;
      }
      if (best >= 0) {
        if (near === null || Math.abs(s.x[best] - x) < Math.abs(near - x)) near = s.x[best];
        lines.push([s.name, s.x[best], s.y[best]]);
      }
    });
    if (near === null) return;
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    var head = document.createElement("b");
    head.textContent = this.axis + " " + String(near);
    tip.appendChild(head);
    var axis = this.axis;
    lines.forEach(function (l, k) {
      var row = document.createElement("div");
      row.className = "s" + (k % 8);
      // the value itself, every digit (JavaScript's shortest round-trip form, as Python's repr)
      var value = l[2] === null ? "–" : String(l[2]);
      row.textContent = l[0] + ": " + value + (l[1] !== near ? " (" + axis + " " + String(l[1]) + ")" : "");
      tip.appendChild(row);
    });
    var px = this.sx(near);
    this.cursor.setAttribute("x1", px); this.cursor.setAttribute("x2", px);
    this.cursor.setAttribute("visibility", "visible");
    tip.style.display = "block";
    tip.style.left = Math.min(px / W * 100, 70) + "%";
  };
  Chart.prototype.bind = function () {
    var self = this, start = null;
    this.svg.addEventListener("mousemove", function (e) {
      var x = self.xAt(e);
      self.hover(x);
      if (start !== null) {
        var a = self.sx(Math.min(start, x)), b = self.sx(Math.max(start, x));
        self.sel.setAttribute("x", a); self.sel.setAttribute("width", Math.max(0, b - a));
        self.sel.setAttribute("visibility", "visible");
      }
    });
    this.svg.addEventListener("mouseleave", function () {
      self.tip.style.display = "none"; self.cursor.setAttribute("visibility", "hidden");
      start = null; self.sel.setAttribute("visibility", "hidden");
    });
    this.svg.addEventListener("mousedown", function (e) { start = self.xAt(e); e.preventDefault(); });
    this.svg.addEventListener("mouseup", function (e) {
      if (start === null) return;
      var x = self.xAt(e), a = Math.min(start, x), b = Math.max(start, x);
      start = null;
      if (b - a > (self.x1 - self.x0) / 200) zoom(self.box.getAttribute("data-run"), a, b);
      else self.sel.setAttribute("visibility", "hidden");
    });
    this.svg.addEventListener("dblclick", function () { zoom(self.box.getAttribute("data-run"), null, null); });
  };

  var charts = {};
  function zoom(run, a, b) {
    (charts[run] || []).forEach(function (c) {
      if (a === null) c.draw(c.full[0], c.full[1]); else c.draw(a, b);
    });
  }

  function sortable(table) {
    var heads = table.querySelectorAll("th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var down = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", down ? "ascending" : "descending");
        var key = function (r) { return r.cells[col].getAttribute("data-sort") || ""; };
        var numeric = rows.every(function (r) { var k = key(r); return k === "" || !isNaN(Number(k)); });
        rows.sort(function (p, q) {
          var a = key(p), b = key(q), d;
          if (a === "" || b === "") d = (a === "") - (b === "");
          else d = numeric ? Number(a) - Number(b) : (a < b ? -1 : a > b ? 1 : 0);
          return down || a === "" || b === "" ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  var data = JSON.parse(document.getElementById("gradlog-data").textContent);
  document.querySelectorAll(".plot").forEach(function (box) {
    var run = box.getAttribute("data-run"), which = Number(box.getAttribute("data-chart"));
    var r = data.runs[run];
    var c = new Chart(box, r.charts[which], r, r.axis);
    (charts[run] = charts[run] || []).push(c);
  });
  // the charts of a run share one x range, so a zoom shows the same events on each
  Object.keys(charts).forEach(function (run) {
    var all = charts[run], lo = Math.min.apply(null, all.map(function (c) { return c.full[0]; }));
    var hi = Math.max.apply(null, all.map(function (c) { return c.full[1]; }));
    all.forEach(function (c) { c.full = [lo, hi]; c.draw(lo, hi); });
  });
  document.querySelectorAll("table.runs").forEach(sortable);
  document.querySelectorAll("button.reset").forEach(function (button) {
    button.addEventListener("click", function () { zoom(button.getAttribute("data-run"), null, null); });
  });
  document.documentElement.setAttribute("data-rendered", String(document.querySelectorAll("svg.chart").length));
})();
