//! The live display while a run goes: phase, elapsed time, throughput,
//! outcomes and the fault in force. Hidden with `--json` or off a terminal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::recorder::Counts;

pub struct Progress {
    bar: ProgressBar,
    phase: Mutex<String>,
    last: Mutex<(Instant, u64)>,
}

impl Progress {
    pub fn new(visible: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(
            None,
            if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar, phase: Mutex::new("starting".into()), last: Mutex::new((Instant::now(), 0)) }
    }

    pub fn phase(&self, phase: &str) {
        *self.phase.lock().expect("not poisoned") = phase.to_string();
        self.bar.set_message(phase.to_string());
    }

    /// Redraws from the counters; call a few times a second.
    pub fn update(&self, elapsed: Duration, limit: f64, counts: &Counts, active: Option<&str>) {
        let (invoked, ok, fail, info) = counts.snapshot();
        let mut last = self.last.lock().expect("not poisoned");
        let dt = last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = (ok + fail + info).saturating_sub(last.1) as f64 / dt;
        *last = (Instant::now(), ok + fail + info);
        let phase = self.phase.lock().expect("not poisoned").clone();
        self.bar.set_message(format!(
            "{phase:<11} {:>5.1}/{limit:.0}s  {rate:>6.0} ops/s  invoked {invoked}  ok {ok}  fail {fail}  info {info}  fault: {}",
            elapsed.as_secs_f64(),
            active.unwrap_or("none")
        ));
    }

    /// Prints a line above the display.
    pub fn println(&self, line: &str) {
        self.bar.println(line);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
