// The console's chart (uPlot, vendored): the LR of every param group over steps, and below it, on
// the same step axis, the metrics posted; or several runs overlaid (the compare page).
//
// Its data is /ui/runs/<run>/chart.json (the playground's is in the page: #preview-data): LRs
// exactly as the API answers them, at about 600 steps of the range shown. A drag zooms both
// panels and asks for the zoomed range again, so that every step is drawn once the range is
// narrow enough; a double-click goes back. The readout shows the hovered step's LRs as the API
// gives them, and each metric's last post at or before it. Markers name each change (schedule,
// scale, plateau, rewind, fork) and each fallback stretch a job reported; hover or click one for
// who and why.
// The page's live refresh (console.js) keeps this element and tells it to fetch its data again.
(() => {
  const root = document.getElementById("chart");
  if (!root || typeof uPlot === "undefined") return;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const KINDS = {schedule: "#222222", scale: "#8b4513", plateau: "#b00020", rewind: "#6a3d9a", fork: "#008080", fallback: "#d97706"};
  const SERVED = "rgba(10, 125, 40, 0.07)";
  const AXIS = 84;  // px of each panel's y axis: the same on both, so that a step is at one x on both
  const STEPS = Array.from({length: 17}, (_, k) => [1, 2, 5].map(m => m * 10 ** k)).flat();
  const sources = JSON.parse(root.dataset.sources);
  const compare = root.dataset.compare === "1";
  // The range and scale asked in the page's address (the playground's changes as it is edited).
  const asked = () => {
    const query = new URLSearchParams(location.search);
    const stop = query.get("stop");
    return {start: Number(query.get("start") || 0), stop: stop ? Number(stop) : null, log: query.get("log") === "1"};
  };
  let view = null;  // the zoomed range, or null for the page's own
  let shown = null;  // what is drawn: {lr, metrics, markers, served, metricSeries, lrSeries}
  let lr = null, metrics = null, busy = false, again = false;

  root.innerHTML = `
    <div class="panel-title">Learning rate <span class="hint">drag to zoom, double-click to reset ·</span> <span class="range hint"></span></div>
    <div class="panel lr-panel"></div>
    <div class="readout" aria-live="polite"></div>
    <div class="marker-detail"></div>
    <div class="panel-title metrics-title">Metrics <span class="metrics-note hint"></span></div>
    <div class="panel metrics-panel"></div>`;
  const readout = root.querySelector(".readout");
  const detail = root.querySelector(".marker-detail");
  const rangeNote = root.querySelector(".range");

  const fmt = v => {  // a tick: 0.025, 1e-4, 2.5e-7
    if (v == null) return "";
    if (v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e6)) return String(+v.toPrecision(4));
    const [mantissa, exponent] = v.toExponential(2).split("e");
    return `${+mantissa}e${exponent}`;
  };
  const stepText = v => Math.round(v).toLocaleString("en-US");

  async function fetchAll(range) {
    if (sources[0].inline) return [JSON.parse(document.getElementById(sources[0].inline).textContent)];
    const get = async (source, stop) => {
      const query = new URLSearchParams({start: range.start});
      if (stop !== null) query.set("stop", stop);
      const answer = await fetch(`${source.url}?${query}`, {headers: {accept: "application/json"}});
      if (!answer.ok) throw new Error(`${source.name}: ${answer.status}`);
      return answer.json();
    };
    let data = await Promise.all(sources.map(s => get(s, range.stop)));
    const common = Math.max(...data.map(d => d.stop));
    if (range.stop === null && data.some(d => d.stop !== common)) {  // runs of different lengths: one range
      data = await Promise.all(sources.map(s => get(s, common)));
    }
    return data;
  }

  function build(data) {
    const lrTables = [], lrSeries = [], markers = [], metricSeries = [];
    const chosen = compare ? (document.getElementById("compare-metric") || {}).value || root.dataset.metric : null;
    data.forEach((d, r) => {
      const prefix = compare ? `${d.run} · ` : "";
      const groups = d.lrs.length;
      const color = g => COLORS[(compare ? r : g) % COLORS.length];
      lrTables.push([d.steps, ...d.lrs]);
      d.lrs.forEach((_, g) => lrSeries.push({
        label: groups > 1 || !compare ? `${prefix}group ${g}` : d.run,
        stroke: color(g), width: compare && g > 0 ? 1 : 1.75, dash: compare && g > 0 ? [2, 3] : undefined,
      }));
      for (const b of d.branches) {
        lrTables.push([b.steps, ...b.lrs]);
        b.lrs.forEach((_, g) => lrSeries.push({
          label: `${prefix}${b.label}${groups > 1 ? ` · group ${g}` : ""}`,
          stroke: color(g), width: 1.25, dash: b.kind === "attempt" ? [6, 4] : [2, 2], alpha: 0.6,
        }));
      }
      for (const m of d.markers) markers.push({...m, title: prefix + m.title});
      for (const [name, series] of Object.entries(d.metrics)) {
        if (compare && name !== chosen) continue;
        const watched = name === d.plateau_metric;
        metricSeries.push({
          label: `${prefix}${name}${watched ? " (plateau)" : ""}`, steps: series.steps, values: series.values,
          stroke: compare ? COLORS[r % COLORS.length] : watched ? "#b00020" : COLORS[(metricSeries.length + 2) % COLORS.length],
          width: watched ? 2.5 : 1.25, plateau: watched,
        });
      }
    });
    return {
      lr: uPlot.join(lrTables), lrSeries, markers, metricSeries,
      metrics: metricSeries.length ? uPlot.join(metricSeries.map(s => [s.steps, s.values])) : [[]],
      served: compare ? null : {from: data[0].start, to: data[0].high_water},
      start: Math.min(...data.map(d => d.start)), stop: Math.max(...data.map(d => d.stop)),
    };
  }

  // -- drawing -------------------------------------------------------------------------------

  function shade(u) {  // the served steps, under the curves
    const s = shown && shown.served;
    if (!s || s.to < s.from) return;
    const {left, top, width, height} = u.bbox;
    const x0 = Math.max(left, u.valToPos(s.from, "x", true)), x1 = Math.min(left + width, u.valToPos(s.to, "x", true));
    if (x1 <= x0) return;
    u.ctx.save();
    u.ctx.fillStyle = SERVED;
    u.ctx.fillRect(x0, top, x1 - x0, height);
    u.ctx.restore();
  }

  function markerLines(u) {
    const {left, top, width, height} = u.bbox;
    u.ctx.save();
    u.ctx.lineWidth = devicePixelRatio;
    u.ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    for (const m of shown ? shown.markers : []) {
      const x = Math.round(u.valToPos(m.step, "x", true));
      if (x < left || x > left + width) continue;
      u.ctx.strokeStyle = KINDS[m.kind] || "#444";
      u.ctx.beginPath(); u.ctx.moveTo(x, top); u.ctx.lineTo(x, top + height); u.ctx.stroke();
    }
    u.ctx.restore();
  }

  function markerLabels(u) {  // a label per marker, over the plot: hover for who and why, click to keep it shown
    for (const old of u.over.querySelectorAll(".marker")) old.remove();
    const width = u.over.clientWidth;
    for (const m of shown ? shown.markers : []) {
      const x = u.valToPos(m.step, "x");
      if (!(x >= 0 && x <= width)) continue;
      const label = document.createElement("button");
      label.type = "button";
      label.className = "marker";
      label.dataset.kind = m.kind;
      label.dataset.step = m.step;
      label.title = m.title;
      label.textContent = m.kind;
      label.style.left = `${x}px`;
      label.style.background = KINDS[m.kind] || "#444";
      label.addEventListener("mousedown", e => e.stopPropagation());  // not the start of a zoom
      label.addEventListener("click", () => { detail.textContent = m.title; });
      u.over.appendChild(label);
    }
  }

  function showReadout(u) {
    const i = u.cursor.idx;
    if (i == null || !shown) { readout.textContent = ""; return; }
    const step = u.data[0][i];
    const parts = [`<b>step ${step}</b>`];
    u.series.forEach((s, k) => {
      const v = k > 0 ? u.data[k][i] : undefined;
      if (v != null && s.show) parts.push(`<span class="lr" data-series="${k}">${escape(s.label)} <b class="value">${String(v)}</b></span>`);
    });
    for (const s of shown.metricSeries) {
      let lo = 0, hi = s.steps.length;  // the last post at or before the step
      while (lo < hi) { const mid = (lo + hi) >> 1; if (s.steps[mid] <= step) lo = mid + 1; else hi = mid; }
      if (lo > 0) parts.push(`<span class="metric">${escape(s.label)} ${String(s.values[lo - 1])} <span class="hint">(step ${s.steps[lo - 1]})</span></span>`);
    }
    readout.innerHTML = parts.join(" · ");
    readout.dataset.step = step;
  }

  const escape = text => text.replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);

  function zoom(u) {  // a drag on either panel: both show its range, then drawn in full detail
    const {left, width} = u.select;
    u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
    if (width < 2) return;
    const min = u.posToVal(left, "x"), max = u.posToVal(left + width, "x");
    view = {start: Math.max(0, Math.floor(min)), stop: Math.floor(max) + 1};
    show(min, max);
    refresh();
  }

  function show(min, max) {  // both panels over steps [min, max]
    for (const chart of [lr, metrics]) chart.setScale("x", {min, max});
    rangeNote.textContent = `steps ${stepText(min)} to ${stepText(max)}`;
    rangeNote.dataset.min = min;
    rangeNote.dataset.max = max;
  }

  function options(height, series, yScale, hooks) {
    return {
      width: root.clientWidth || 900, height,
      legend: {live: false},
      cursor: {
        sync: {key: "lrtower-steps"}, drag: {x: true, y: false, setScale: false},
        bind: {dblclick: () => () => { reset(); return null; }},
      },
      scales: {x: {time: false}, y: yScale},
      axes: [
        {incrs: STEPS, values: (u, ticks) => ticks.map(stepText), label: "step", labelSize: 16},
        {size: AXIS, values: (u, ticks) => ticks.map(fmt)},
      ],
      series: [{label: "step"}, ...series],
      hooks,
    };
  }

  function draw(next) {
    shown = next;
    const lrSeries = next.lrSeries.map(s => ({...s, spanGaps: true, points: {show: false}}));
    const metricSeries = next.metricSeries.map(s => ({label: s.label, stroke: s.stroke, width: s.width, spanGaps: true}));
    const positive = next.lr.slice(1).flat().filter(v => v > 0);
    const yLR = next.log ? {distr: 4, asinh: positive.length ? Math.min(...positive) : 1e-12} : {};
    const panels = root.querySelectorAll(".panel");
    for (const chart of [lr, metrics]) if (chart) chart.destroy();
    lr = new uPlot(options(320, lrSeries, yLR, {
      drawClear: [shade], draw: [markerLines, markerLabels], setCursor: [showReadout], setSelect: [zoom],
    }), next.lr, panels[0]);
    metrics = new uPlot(options(next.metricSeries.length ? 200 : 60, metricSeries, {}, {
      draw: [markerLines, markerLabels], setSelect: [zoom],
    }), next.metrics, panels[1]);
    root.querySelector(".metrics-note").textContent = next.metricSeries.length ? "" : "none posted in this range";
    panels[1].hidden = !next.metricSeries.length;  // an empty panel would have no y axis to line up
    root.querySelector(".metrics-title").hidden = Boolean(sources[0].inline);  // a spec has no metrics
    window.lrtowerCharts = {lr, metrics};  // the two uPlot instances, for the browser tests (and a console user)
  }

  function redraw(next, range) {  // new data for the same series: the charts stay, their data changes
    shown = next;
    lr.setData(next.lr, false);
    metrics.setData(next.metrics, false);
    const steps = next.lr[0];
    if (range) show(range.start, range.stop - 1);
    else show(steps.length ? steps[0] : next.start, steps.length ? steps[steps.length - 1] : next.stop - 1);
  }

  async function refresh() {
    // One fetch at a time: a slow server gets fewer requests, and what is asked meanwhile (a
    // zoom, a reset, a live refresh) is asked once, after it, for the range shown by then.
    if (busy) { again = true; return; }
    busy = true;
    try {
      const range = view, page = asked();
      const data = await fetchAll(range || page);
      if (range !== view) return;  // zoomed or reset meanwhile: asked again below
      root.hidden = data.includes(null);  // the playground's spec has no curve: its errors say why
      if (root.hidden) return;
      const next = {...build(data), log: page.log};
      const same = lr && JSON.stringify([next.log, next.lrSeries, next.metricSeries.map(s => s.label)])
        === JSON.stringify([shown.log, shown.lrSeries, shown.metricSeries.map(s => s.label)]);
      if (!same) draw(next);
      redraw(next, range);
    } catch (error) {
      readout.textContent = `chart: ${error.message}`;  // the server restarts or the network is down: next refresh
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  function reset() {
    view = null;
    refresh();
  }

  document.addEventListener("lrtower:refreshed", refresh);
  document.addEventListener("change", event => {  // the compare page's metric: kept in the address for the live refresh
    if (event.target.id !== "compare-metric") return;
    const address = new URL(location.href);
    address.searchParams.set("metric", event.target.value);
    history.replaceState(null, "", address);
    refresh();
  });
  addEventListener("resize", () => { for (const chart of [lr, metrics]) if (chart) chart.setSize({width: root.clientWidth, height: chart.height}); });
  refresh();
})();
