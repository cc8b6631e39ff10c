//! The history, written as it happens: one JSON line per event, flushed at
//! once, so that a crash of the harness keeps everything recorded so far.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use checker::{Event, EventType, Process};

/// Counts by outcome, for the progress display and results.json.
#[derive(Debug, Default)]
pub struct Counts {
    pub invoked: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

impl Counts {
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.invoked), get(&self.ok), get(&self.fail), get(&self.info))
    }
}

struct Sink {
    out: BufWriter<File>,
    next_index: u64,
    error: Option<std::io::Error>,
}

pub struct Recorder {
    sink: Mutex<Sink>,
    start: Instant,
    pub counts: Counts,
}

impl Recorder {
    pub fn create(path: &Path, start: Instant) -> std::io::Result<Recorder> {
        let file = File::create(path)?;
        Ok(Recorder {
            sink: Mutex::new(Sink { out: BufWriter::new(file), next_index: 0, error: None }),
            start,
            counts: Counts::default(),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends one event; index and time are taken under the lock so both grow together.
    pub fn record(
        &self,
        kind: EventType,
        process: Process,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
        error: Option<String>,
    ) {
        self.record_marked(kind, process, f, key, value, error, None);
    }

    /// [`Recorder::record`], with the fault band a nemesis event opens or closes.
    #[allow(clippy::too_many_arguments)]
    pub fn record_marked(
        &self,
        kind: EventType,
        process: Process,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
        error: Option<String>,
        fault: Option<checker::FaultMark>,
    ) {
        let mut event = Event::new(0, kind, process, f, key.map(checker::Key::from), value, 0);
        (event.error, event.fault) = (error, fault);
        self.record_event(event);
    }

    /// Records `event` as it is but for its index and time, which are the
    /// next index and now.
    pub fn record_event(&self, mut event: Event) {
        if let Process::Client(_) = event.process {
            let counter = match event.kind {
                EventType::Invoke => &self.counts.invoked,
                EventType::Ok => &self.counts.ok,
                EventType::Fail => &self.counts.fail,
                EventType::Info => &self.counts.info,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut sink = self.sink.lock().expect("not poisoned");
        event.index = sink.next_index;
        event.time = self.now();
        sink.next_index += 1;
        // Straight into the buffer, no line string per event; flushed at once
        // so a crash keeps it.
        let written = serde_json::to_writer(&mut sink.out, &event)
            .map_err(std::io::Error::from)
            .and_then(|()| sink.out.write_all(b"\n"))
            .and_then(|()| sink.out.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the history");
            sink.error.get_or_insert(e);
        }
    }

    /// The first write error, if any: a run with a broken history is a harness failure.
    pub fn finish(&self) -> std::io::Result<()> {
        let mut sink = self.sink.lock().expect("not poisoned");
        sink.out.flush()?;
        match sink.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
