//! The timeline: one lane per process, each operation a box from invocation
//! to completion. Drawn on a canvas by a small inline script that paints
//! only what is in view, so 100,000 operations stay responsive: the wheel
//! zooms time, dragging pans, the slider scrolls lanes, hovering shows the
//! whole operation.

use serde_json::json;

use super::spans::{Outcome, Spans};

/// The timeline's data, as JSON for the script.
pub fn data(spans: &Spans) -> String {
    let lanes = super::spans::lanes(spans.ops.iter().map(|o| o.process));
    let ms = |ns: u64| (ns as f64 / 1e4).round() / 100.0;
    let ops: Vec<serde_json::Value> = spans
        .ops
        .iter()
        .map(|o| {
            let outcome = match o.outcome {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            };
            json!([lanes[&o.process], ms(o.start), o.end.map_or(-1.0, ms), outcome, o.describe()])
        })
        .collect();
    let faults: Vec<serde_json::Value> =
        spans.faults.iter().map(|w| json!([ms(w.start), ms(w.end), w.kind, w.detail, w.colour])).collect();
    let data = json!({
        "end": ms(spans.end),
        "lanes": lanes.keys().collect::<Vec<_>>(),
        "ops": ops,
        "faults": faults,
    });
    // Safe inside <script type="application/json">.
    data.to_string().replace("</", "<\\/")
}

/// The script that draws `#timeline` from `#timeline-data`.
pub const SCRIPT: &str = r#"
(function () {
  const data = JSON.parse(document.getElementById('timeline-data').textContent);
  const canvas = document.getElementById('timeline');
  const tip = document.getElementById('timeline-tip');
  const slider = document.getElementById('timeline-lanes');
  const ctx = canvas.getContext('2d');
  const LANE = 14, LEFT = 60, TOP = 20;
  const colours = ['#289646', '#dc3232', '#f0aa14'];
  // A band's colour comes with it (#rrggbb), drawn faint.
  const faint = (hex) => /^#[0-9a-fA-F]{6}$/.test(hex || '') ? hex + '22' : 'rgba(120,120,120,0.13)';
  const byLane = data.lanes.map(() => []);
  for (const op of data.ops) byLane[op[0]].push(op);
  for (const lane of byLane) lane.sort((a, b) => a[1] - b[1]);
  const end = Math.max(data.end, 1);
  let t0 = 0, t1 = end, firstLane = 0;
  const visibleLanes = () => Math.max(1, Math.floor((canvas.height - TOP - 14) / LANE));
  slider.addEventListener('input', () => { firstLane = +slider.value; draw(); });
  const x = t => LEFT + (t - t0) / (t1 - t0) * (canvas.width - LEFT);
  const time = px => t0 + (px - LEFT) / (canvas.width - LEFT) * (t1 - t0);
  // First op of a lane that may still be visible at t0 (ops of a lane do not overlap).
  function firstVisible(lane) {
    let lo = 0, hi = lane.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (lane[mid][1] < t0) lo = mid + 1; else hi = mid; }
    return Math.max(0, lo - 1);
  }
  function draw() {
    // Match the drawing buffer to the element's size, or everything stretches.
    canvas.width = canvas.clientWidth;
    canvas.height = canvas.clientHeight;
    slider.max = Math.max(0, data.lanes.length - visibleLanes());
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (const f of data.faults) {
      if (f[1] < t0 || f[0] > t1) continue;
      ctx.fillStyle = faint(f[4]);
      ctx.fillRect(x(f[0]), TOP, Math.max(1, x(f[1]) - x(f[0])), canvas.height - TOP);
      ctx.fillStyle = '#555'; ctx.font = '11px sans-serif'; ctx.fillText(f[2], x(f[0]) + 2, 12);
    }
    const n = visibleLanes();
    ctx.font = '10px sans-serif';
    for (let l = firstLane; l < Math.min(data.lanes.length, firstLane + n); l++) {
      const y = TOP + (l - firstLane) * LANE;
      ctx.fillStyle = '#666'; ctx.fillText('p' + data.lanes[l], 4, y + 10);
      const lane = byLane[l];
      for (let i = firstVisible(lane); i < lane.length && lane[i][1] <= t1; i++) {
        const op = lane[i];
        const e = op[2] < 0 ? end : op[2];
        if (e < t0) continue;
        const a = Math.max(LEFT, x(op[1])), b = Math.min(canvas.width, x(e));
        ctx.fillStyle = colours[op[3]];
        ctx.fillRect(a, y + 2, Math.max(1, b - a), LANE - 4);
      }
    }
    ctx.fillStyle = '#333'; ctx.font = '11px sans-serif';
    for (let k = 0; k <= 8; k++) {
      const t = t0 + (t1 - t0) * k / 8;
      ctx.fillText((t / 1000).toFixed(t1 - t0 < 5000 ? 3 : 1) + 's', x(t) - 10, canvas.height - 2);
    }
  }
  canvas.addEventListener('wheel', ev => {
    ev.preventDefault();
    const at = time(ev.offsetX), k = ev.deltaY > 0 ? 1.25 : 0.8;
    t0 = Math.max(0, at - (at - t0) * k); t1 = Math.min(end, at + (t1 - at) * k);
    if (t1 - t0 < 0.01) t1 = t0 + 0.01;
    draw();
  }, {passive: false});
  let drag = null;
  canvas.addEventListener('mousedown', ev => { drag = {x: ev.offsetX, t0, t1}; });
  window.addEventListener('mouseup', () => { drag = null; });
  canvas.addEventListener('mousemove', ev => {
    if (drag) {
      const dt = (ev.offsetX - drag.x) / (canvas.width - LEFT) * (drag.t1 - drag.t0);
      const span = drag.t1 - drag.t0;
      t0 = Math.min(Math.max(0, drag.t0 - dt), end - span); t1 = t0 + span;
      draw(); return;
    }
    const l = firstLane + Math.floor((ev.offsetY - TOP) / LANE), t = time(ev.offsetX);
    const lane = byLane[l];
    let hit = null;
    if (lane && ev.offsetY >= TOP) {
      for (let i = firstVisible(lane); i < lane.length && lane[i][1] <= t1; i++) {
        const op = lane[i], e = op[2] < 0 ? end : op[2];
        if (op[1] <= t && t <= e || Math.abs(x(op[1]) - ev.offsetX) < 2) { hit = op; break; }
      }
    }
    if (hit) {
      tip.textContent = hit[4] + '  (' + hit[1].toFixed(2) + ' ms → ' + (hit[2] < 0 ? '…' : hit[2].toFixed(2) + ' ms') + ')';
      tip.style.display = 'block'; tip.style.left = (ev.pageX + 12) + 'px'; tip.style.top = (ev.pageY + 12) + 'px';
    } else {
      tip.style.display = 'none';
    }
  });
  canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  document.getElementById('timeline-reset').addEventListener('click', () => { t0 = 0; t1 = end; draw(); });
  window.addEventListener('resize', draw);
  draw();
  // Tests (and curious people) can see the script ran to the end.
  document.documentElement.dataset.timeline = 'ready';
})();
"#;
