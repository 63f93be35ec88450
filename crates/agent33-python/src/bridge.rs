//! The bridge from the engine's threads to the caller's asyncio loop.
//!
//! Engine threads never take the GIL to reach Python: they queue a job and,
//! if the queue was empty, write one byte to a socket whose other end the
//! loop watches (`loop.add_reader`). The loop then runs every queued job in
//! one go, with the GIL it already holds. A burst of task starts, results
//! and cancellations therefore costs one wake-up of the loop, not one each
//! (as `call_soon_threadsafe` per job would).

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;

/// Work to do on the loop's thread, with the GIL.
pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A byte is on its way to the loop: no need to write another.
    woken: bool,
}

/// One run's way onto its asyncio loop.
pub struct Bridge {
    queue: Mutex<Queue>,
    writer: UnixStream,
    reader: UnixStream,
}

impl Bridge {
    /// A bridge whose reading end the caller registers with
    /// `loop.add_reader(bridge.fd(), Drainer)`.
    pub fn new() -> std::io::Result<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Self {
            queue: Mutex::new(Queue::default()),
            writer,
            reader,
        })
    }

    /// The descriptor the loop watches.
    pub fn fd(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Queues `job` to run on the loop's thread, soon.
    pub fn submit(&self, job: Job) {
        let wake = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.jobs.push(job);
            !std::mem::replace(&mut q.woken, true)
        };
        if wake {
            // A full socket buffer means the loop has bytes to read anyway.
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// Runs what is queued; called by the loop when the socket is readable.
    pub fn drain(&self, py: Python<'_>) {
        let mut buf = [0u8; 256];
        loop {
            match (&self.reader).read(&mut buf) {
                Ok(n) if n == buf.len() => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        let jobs = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.woken = false;
            std::mem::take(&mut q.jobs)
        };
        for job in jobs {
            job(py);
        }
    }
}

/// The loop's reader callback: runs the bridge's queued jobs.
#[pyclass(frozen, module = "agent33_parallel._native")]
pub struct Drainer {
    pub bridge: std::sync::Arc<Bridge>,
}

#[pymethods]
impl Drainer {
    fn __call__(&self, py: Python<'_>) {
        self.bridge.drain(py);
    }
}

/// Resolves an asyncio future with `None` unless it is already done (the
/// awaiting task may have been cancelled meanwhile).
pub fn resolve(py: Python<'_>, fut: &Py<PyAny>) {
    let fut = fut.bind(py);
    let done = fut
        .call_method0("done")
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    if !done {
        let _ = fut.call_method1("set_result", (py.None(),));
    }
}
