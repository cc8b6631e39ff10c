//! The HTML around the pieces: escaping, style, layout.

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1160px; padding: 16px; color: #222; }
h1 { font-size: 22px; margin: 8px 0; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; } h4 { font-size: 14px; margin-bottom: 4px; }
.verdict { display: inline-block; padding: 4px 12px; border-radius: 4px; color: white; font-weight: bold; font-size: 18px; }
.verdict.valid { background: #289646; } .verdict.invalid { background: #c83232; }
.verdict.unknown { background: #d08c00; } .verdict.none { background: #777; }
.verdict.vacuous { background: #7a5c99; }
.warning { background: #c83232; color: white; padding: 8px 12px; border-radius: 4px; font-weight: bold; }
table.findings td.passed { color: #289646; font-weight: bold; } table.findings td.failed { color: #c83232; font-weight: bold; }
table.findings td.vacuous, table.findings td.skipped { color: #7a5c99; font-weight: bold; }
table.findings pre { margin: 2px 0; font-size: 12px; white-space: pre-wrap; }
table.summary td { padding: 2px 12px 2px 0; vertical-align: top; } table.summary td:first-child { color: #666; }
table.ops { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.ops td, table.ops th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
tr.unplaced td { background: #fde2e2; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre.replay { background: #f4f4f4; padding: 8px; overflow-x: auto; }
.plot svg { max-width: 100%; height: auto; }
#timeline { width: 100%; height: 420px; border: 1px solid #ddd; cursor: grab; display: block; }
#timeline-tip { position: absolute; display: none; background: #fffbe6; border: 1px solid #aaa; padding: 4px 6px;
  font: 12px ui-monospace, monospace; pointer-events: none; max-width: 600px; }
.lin-wrap { overflow-x: auto; border: 1px solid #ddd; }
svg.lin text { font: 10px ui-monospace, monospace; } svg.lin text.lane { fill: #666; }
svg.lin .op rect { stroke: #333; stroke-width: 0.5; } svg.lin .placed rect { fill: #cfe8d5; }
svg.lin .unplaced rect { fill: #f7a8a8; stroke: #c83232; stroke-width: 2; } svg.lin .later rect { fill: #eee; }
svg.lin .open rect { stroke-dasharray: 4 2; }
.sw { display: inline-block; width: 12px; height: 10px; border: 1px solid #333; margin: 0 4px 0 10px; }
.sw.placed { background: #cfe8d5; } .sw.unplaced { background: #f7a8a8; } .sw.later { background: #eee; }
.note { color: #666; font-size: 13px; }
"#;
