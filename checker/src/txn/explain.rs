//! Cycles explained as Elle explains them: each edge with the operations
//! that make it and why, in words, and a small diagram of the cycle.

use super::Step;
use super::graph::{Cycle, RW, WR, WW, edge_name};
use super::history::{Mop, Transactions};
use super::infer::Facts;
use crate::report::page::escape;

/// The reads of transaction `t` made before it appended to their key:
/// (key, list).
fn external_reads(h: &Transactions, t: usize) -> Vec<(u32, &[u32])> {
    let mut appended = Vec::new();
    let mut reads = Vec::new();
    for m in &h.txns[t].mops {
        match m {
            Mop::Append { key, .. } => appended.push(*key),
            Mop::Read { key, list: Some(list) } if !appended.contains(key) => reads.push((*key, &list[..])),
            Mop::Read { .. } => {}
        }
    }
    reads
}

/// Why `from` comes before `to` by an edge of `kind`.
fn why(h: &Transactions, facts: &Facts, from: usize, to: usize, kind: u8) -> String {
    let (a, b) = (&h.txns[from], &h.txns[to]);
    match kind {
        WW => {
            for mop in &a.mops {
                let Mop::Append { key, element } = *mop else { continue };
                let Some(pos) = facts.writer_of(key, element).and_then(|e| e.pos) else { continue };
                if facts.writer_at(key, pos + 1) == Some(to) {
                    let next = h.element(facts.orders[key as usize][pos + 1]);
                    return format!(
                        "T{from} appended {} to {}, and T{to} appended {next} right after it in the key's order",
                        h.element(element),
                        h.key(key)
                    );
                }
            }
            format!("T{from}'s append comes right before T{to}'s")
        }
        WR => {
            for (key, list) in external_reads(h, to) {
                if let Some(&last) = list.last()
                    && facts.writer_of(key, last).map(|e| e.writer) == Some(from)
                {
                    return format!(
                        "T{to} read {} = {}, whose last element {} T{from} appended: T{to} saw T{from}'s write",
                        h.key(key),
                        h.list(list),
                        h.element(last)
                    );
                }
            }
            format!("T{to} saw T{from}'s write")
        }
        RW => {
            for (k, read) in external_reads(h, from) {
                let order = &facts.orders[k as usize];
                let (key, list) = (h.key(k), h.list(read));
                if facts.writer_at(k, read.len()) == Some(to) {
                    return format!(
                        "T{from} read {key} = {list}, without {}, which T{to} appended next: T{from}'s read came before T{to}'s write",
                        h.element(order[read.len()])
                    );
                }
                if read.len() == order.len() {
                    let appended = b.mops.iter().find_map(|m| match *m {
                        Mop::Append { key, element } if key == k => Some(element),
                        _ => None,
                    });
                    if let Some(e) = appended {
                        return format!(
                            "T{from} read {key} = {list}, without {}, which T{to} appended (committed, and read by nobody): T{from}'s read came before T{to}'s write",
                            h.element(e)
                        );
                    }
                }
            }
            format!("T{from} did not see T{to}'s write")
        }
        _ => {
            let done = a.complete_time.map_or("?".to_string(), |t| format!("{:.3} s", t as f64 / 1e9));
            format!(
                "T{from} completed (at {done}) before T{to} was invoked (at {:.3} s): real time orders them",
                b.invoke_time as f64 / 1e9
            )
        }
    }
}

/// The cycle as steps, each with its transaction and its edge explained.
pub(super) fn steps(h: &Transactions, facts: &Facts, cycle: &Cycle) -> Vec<Step> {
    cycle
        .iter()
        .enumerate()
        .map(|(i, &(t, kind))| {
            let next = cycle[(i + 1) % cycle.len()].0;
            Step { txn: t, describe: h.describe(t), edge: edge_name(kind).into(), why: why(h, facts, t, next, kind) }
        })
        .collect()
}

fn colour(edge: &str) -> &'static str {
    match edge {
        "ww" => "#b22222",
        "wr" => "#1f6fb2",
        "rw" => "#d2691e",
        _ => "#777777",
    }
}

/// The cycle drawn as transactions on a circle with labelled arrows.
pub fn diagram(steps: &[Step]) -> String {
    let n = steps.len().max(1) as f64;
    let (w, h, r) = (360.0, 300.0, 105.0);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let at = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (cx + r * a.cos(), cy + r * a.sin())
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"context-stroke\"/></marker></defs>"
    );
    for (i, s) in steps.iter().enumerate() {
        let ((x1, y1), (x2, y2)) = (at(i), at((i + 1) % steps.len()));
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        // From the edge of one node's circle to the other's.
        let (ux, uy) = (dx / len, dy / len);
        let (sx, sy, ex, ey) = (x1 + ux * 22.0, y1 + uy * 22.0, x2 - ux * 22.0, y2 - uy * 22.0);
        // Curved to one side of its direction, so that the two edges of a
        // pair of transactions (one each way) do not overlap.
        let (qx, qy) = ((sx + ex) / 2.0 - uy * 40.0, (sy + ey) / 2.0 + ux * 40.0);
        let c = colour(&s.edge);
        svg.push_str(&format!(
            "<path d=\"M {sx:.1} {sy:.1} Q {qx:.1} {qy:.1} {ex:.1} {ey:.1}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" marker-end=\"url(#arrow)\"><title>{}</title></path>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{c}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            escape(&s.why),
            (sx + ex) / 2.0 - uy * 30.0,
            (sy + ey) / 2.0 + ux * 30.0 + 4.0,
            escape(&s.edge)
        ));
    }
    for (i, s) in steps.iter().enumerate() {
        let (x, y) = at(i);
        svg.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"20\" fill=\"#fff\" stroke=\"#333\"><title>{}</title></circle>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">T{}</text>",
            escape(&s.describe),
            y + 4.0,
            s.txn
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagram_names_every_transaction_and_edge() {
        let step = |txn, edge: &str| Step {
            txn,
            describe: format!("T{txn} <x>"),
            edge: edge.into(),
            why: "because & so".into(),
        };
        let svg = diagram(&[step(1, "wr"), step(2, "rw")]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(">T1<") && svg.contains(">T2<") && svg.contains(">wr<") && svg.contains(">rw<"));
        assert!(svg.contains("because &amp; so") && svg.contains("T1 &lt;x&gt;"), "{svg}");
    }
}
