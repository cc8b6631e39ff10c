//! The view of one invalid key, after Porcupine's: its operations per
//! process around the point where the search got stuck, the longest
//! linearizable prefix in the order found with the model's state after each
//! step, and the operations that could not be placed, highlighted.

use std::collections::HashMap;
use std::fmt::Write;

use super::page::escape;
use crate::check::KeyReport;
use crate::operation::Operation;

/// Steps of the prefix shown up front; the rest fold away.
const STEPS_SHOWN: usize = 25;
/// Operations drawn in the lane diagram at most.
const OPS_DRAWN: usize = 250;

pub fn render(key: &KeyReport) -> String {
    let mut out = String::new();
    let name = key.key.as_ref().map_or_else(|| "(the register)".to_string(), |k| k.quoted());
    let _ =
        writeln!(out, "<section class=\"invalid-key\"><h3>Key <code>{}</code>: not linearizable</h3>", escape(&name));
    if let Some(why) = &key.reason {
        let _ = writeln!(out, "<p>What the reads prove: {}.</p>", escape(why));
    }
    let Some(cx) = &key.counterexample else {
        let _ = writeln!(out, "<p>No counterexample was kept.</p></section>");
        return out;
    };
    let ops: HashMap<usize, &Operation> = key.ops.iter().map(|o| (o.id, o)).collect();
    let step_of: HashMap<usize, usize> = cx.linearized.iter().enumerate().map(|(i, s)| (s.op, i + 1)).collect();
    let unplaced: HashMap<usize, &str> = cx.unplaced.iter().map(|u| (u.op, u.reason.as_str())).collect();
    let _ = writeln!(
        out,
        "<p>{} operations on this key. The search linearized {} of them (below, in the order found) and then \
         could place none of the {} operations that could come next.</p>",
        key.ops.len(),
        cx.linearized.len(),
        cx.unplaced.len()
    );
    out.push_str(&lanes(&key.ops, &step_of, &unplaced));

    let _ = writeln!(
        out,
        "<h4>Operations that could not be placed next</h4><table class=\"ops\"><tr><th>op</th><th>process</th><th>why not</th></tr>"
    );
    for u in &cx.unplaced {
        let desc = ops.get(&u.op).map_or_else(|| format!("#{}", u.op), |o| o.describe());
        let process = ops.get(&u.op).map_or(String::new(), |o| o.process.to_string());
        let _ = writeln!(
            out,
            "<tr class=\"unplaced\"><td>{}</td><td>{process}</td><td>{}</td></tr>",
            escape(&desc),
            escape(&u.reason)
        );
    }
    out.push_str("</table>");

    let _ = writeln!(out, "<h4>Longest linearizable prefix</h4>");
    let row = |out: &mut String, i: usize, step: &crate::search::Step| {
        let desc = ops.get(&step.op).map_or_else(|| format!("#{}", step.op), |o| o.describe());
        let process = ops.get(&step.op).map_or(String::new(), |o| o.process.to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{process}</td><td><code>{}</code></td></tr>",
            i + 1,
            escape(&desc),
            escape(&step.state_after)
        );
    };
    let header = "<table class=\"ops\"><tr><th>step</th><th>operation</th><th>process</th><th>state after</th></tr>";
    let split = cx.linearized.len().saturating_sub(STEPS_SHOWN);
    if split > 0 {
        let _ = writeln!(out, "<details><summary>the first {split} steps</summary>{header}");
        for (i, step) in cx.linearized[..split].iter().enumerate() {
            row(&mut out, i, step);
        }
        out.push_str("</table></details>");
    }
    out.push_str(header);
    for (i, step) in cx.linearized.iter().enumerate().skip(split) {
        row(&mut out, i, step);
    }
    out.push_str("</table></section>");
    out
}

/// An SVG of the operations around the failure, one lane per process.
fn lanes(all: &[Operation], step_of: &HashMap<usize, usize>, unplaced: &HashMap<usize, &str>) -> String {
    // The window: from the invocation of the earliest of the last few steps
    // and the unplaced operations to the completion of the latest of them.
    let last_steps = step_of.len().saturating_sub(10);
    let focus: Vec<&Operation> = all
        .iter()
        .filter(|o| unplaced.contains_key(&o.id) || step_of.get(&o.id).is_some_and(|&s| s > last_steps))
        .collect();
    let end_of = |o: &Operation| o.complete_time.unwrap_or(u64::MAX);
    let from = focus.iter().map(|o| o.invoke_time).min().unwrap_or(0);
    let to_known =
        focus.iter().filter_map(|o| o.complete_time).chain(focus.iter().map(|o| o.invoke_time)).max().unwrap_or(from);
    let mut shown: Vec<&Operation> = all.iter().filter(|o| o.invoke_time <= to_known && end_of(o) >= from).collect();
    shown.sort_by_key(|o| (!unplaced.contains_key(&o.id), o.invoke_time));
    shown.truncate(OPS_DRAWN);
    let to = shown.iter().map(|o| o.complete_time.unwrap_or(to_known)).max().unwrap_or(to_known).max(from + 1);
    let processes = super::spans::lanes(shown.iter().map(|o| o.process));
    let (width, lane, left) = (1100.0, 26.0, 40.0);
    let height = processes.len() as f64 * lane + 30.0;
    let x = |t: u64| left + (t.saturating_sub(from)) as f64 / (to - from) as f64 * (width - left - 20.0);
    let mut svg = format!(
        "<svg class=\"lin\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (p, i) in &processes {
        let y = 10.0 + *i as f64 * lane;
        let _ = write!(svg, "<text x=\"4\" y=\"{}\" class=\"lane\">p{p}</text>", y + 15.0);
    }
    for o in &shown {
        let y = 10.0 + processes[&o.process] as f64 * lane;
        let (a, b) = (x(o.invoke_time), x(o.complete_time.unwrap_or(to)).max(x(o.invoke_time) + 2.0));
        let class = if unplaced.contains_key(&o.id) {
            "op unplaced"
        } else if step_of.contains_key(&o.id) {
            "op placed"
        } else {
            "op later"
        };
        let dashed = if o.complete_time.is_none() { " open" } else { "" };
        let step = step_of.get(&o.id).map(|s| format!("#{s} ")).unwrap_or_default();
        // As much of the description as fits in the box (about 6 px a character).
        let fits = ((b - a - 6.0) / 6.2).max(0.0) as usize;
        let label: String = format!("{step}{}", short(o)).chars().take(fits).collect();
        let mut title = o.describe();
        if let Some(reason) = unplaced.get(&o.id) {
            title.push_str(&format!(" — cannot be placed: {reason}"));
        }
        let _ = write!(
            svg,
            "<g class=\"{class}{dashed}\"><title>{}</title><rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{}\" rx=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            escape(&title),
            y + 2.0,
            b - a,
            lane - 6.0,
            a + 3.0,
            y + 15.0,
            escape(&label)
        );
    }
    svg.push_str("</svg>");
    format!(
        "<p class=\"legend\"><span class=\"sw placed\"></span> linearized (with its step) \
         <span class=\"sw unplaced\"></span> could not be placed <span class=\"sw later\"></span> not reached \
         — hover an operation for all of it.</p><div class=\"lin-wrap\">{svg}</div>"
    )
}

/// The description without its process (the lane says it), at most 40 characters.
fn short(o: &Operation) -> String {
    let full = o.describe();
    let d = full.strip_prefix(&format!("process {}: ", o.process)).unwrap_or(&full);
    if d.chars().count() > 40 { format!("{}…", d.chars().take(40).collect::<String>()) } else { d.to_string() }
}
