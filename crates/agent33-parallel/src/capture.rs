//! Bounded capture of a task's output: the tail is kept, the rest counted.
//!
//! Memory per stream never exceeds the limit, however much a task writes.
//! Rendering adds the `[agent-33: N bytes truncated]` marker line when bytes
//! were dropped; the marker is not counted in the limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use crate::event::{Backlog, Batch, Event, Stream};
use crate::task::TaskId;

/// The last `limit` bytes written, and how many came before them.
#[derive(Debug)]
pub struct TailBuffer {
    buf: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

impl TailBuffer {
    /// An empty buffer keeping at most `limit` bytes.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            limit,
            dropped: 0,
        }
    }

    /// Appends bytes, dropping the oldest beyond the limit.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= self.limit {
            self.dropped += (self.buf.len() + bytes.len() - self.limit) as u64;
            self.buf.clear();
            self.buf.extend(&bytes[bytes.len() - self.limit..]);
            return;
        }
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.limit);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.dropped += overflow as u64;
        }
        self.buf.extend(bytes);
    }

    /// Bytes dropped so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes as text (invalid UTF-8 replaced by U+FFFD), preceded by
    /// the truncation marker when bytes were dropped.
    #[must_use]
    pub fn render(&self) -> String {
        if self.buf.is_empty() && self.dropped == 0 {
            // Most tasks print nothing: skip the UTF-8 pass.
            return String::new();
        }
        let (a, b) = self.buf.as_slices();
        let text = if b.is_empty() {
            String::from_utf8_lossy(a).into_owned()
        } else {
            let mut joined = Vec::with_capacity(a.len() + b.len());
            joined.extend_from_slice(a);
            joined.extend_from_slice(b);
            String::from_utf8_lossy(&joined).into_owned()
        };
        if self.dropped == 0 {
            text
        } else {
            format!("[agent-33: {} bytes truncated]\n{text}", self.dropped)
        }
    }
}

/// Bytes of live output sent to a run's consumer and not yet taken: the
/// bound that keeps a fast writer and a slow terminal from filling memory.
/// Past it, output is dropped (and announced) or, lossless, its writers
/// wait for room.
#[derive(Debug, Default)]
pub(crate) struct LiveBudget {
    queued: AtomicUsize,
    lossless: bool,
    room: Notify,
}

impl LiveBudget {
    /// Live output that may wait for the consumer at once, over all tasks.
    pub(crate) const LIMIT: usize = 16 << 20;

    pub(crate) fn new(lossless: bool) -> Self {
        Self {
            lossless,
            ..Self::default()
        }
    }

    /// Resolves once the consumer is under the limit; at once unless
    /// lossless.
    pub(crate) async fn room(&self) {
        if !self.lossless {
            return;
        }
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the look, so a release in between wakes it.
            notified.as_mut().enable();
            if self.queued.load(Ordering::Acquire) < Self::LIMIT {
                return;
            }
            notified.await;
        }
    }

    fn try_take(&self, n: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= Self::LIMIT).then_some(q + n)
            })
            .is_ok()
    }

    fn take(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    /// The consumer took an event; its bytes no longer count.
    pub(crate) fn release(&self, event: &Event) {
        if let Event::TaskOutput { bytes, .. } = event {
            let before = self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
            if self.lossless && before >= Self::LIMIT && before - bytes.len() < Self::LIMIT {
                self.room.notify_waiters();
            }
        }
    }
}

/// One attempt's capture of stdout and stderr, shared between the agent's
/// context and the engine so a stopped task keeps what it printed.
#[derive(Debug)]
pub(crate) struct Capture {
    /// Made at the first write: most tasks of a large run print nothing,
    /// and then finishing the capture takes no lock.
    streams: OnceLock<Box<Mutex<Streams>>>,
    limit: usize,
    pub(crate) live: Option<LiveSink>,
}

#[derive(Debug)]
struct Streams {
    tails: [TailBuffer; 2],
    /// Live bytes not forwarded because the consumer was too far behind.
    unshown: [u64; 2],
}

#[derive(Debug)]
pub(crate) struct LiveSink {
    pub(crate) seq: u64,
    pub(crate) id: TaskId,
    pub(crate) events: UnboundedSender<Batch>,
    pub(crate) budget: Arc<LiveBudget>,
    /// Each batch sent here is one the consumer will count as taken.
    pub(crate) backlog: Arc<Backlog>,
}

impl LiveSink {
    fn send(&self, stream: Stream, bytes: Vec<u8>) {
        self.backlog.sent(1);
        // A closed receiver only means nobody watches any more.
        let _ = self.events.send(Batch::from([Event::TaskOutput {
            seq: self.seq,
            id: self.id.clone(),
            stream,
            bytes,
        }]));
    }

    fn send_unshown(&self, stream: Stream, unshown: &mut u64) {
        if *unshown > 0 {
            let marker = format!("[agent-33: {unshown} bytes not shown live]\n").into_bytes();
            self.budget.take(marker.len());
            self.send(stream, marker);
            *unshown = 0;
        }
    }
}

impl Capture {
    pub(crate) fn new(limit: usize, live: Option<LiveSink>) -> Self {
        Self {
            streams: OnceLock::new(),
            limit,
            live,
        }
    }

    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let i = stream as usize;
        let streams = self.streams.get_or_init(|| {
            Box::new(Mutex::new(Streams {
                tails: [TailBuffer::new(self.limit), TailBuffer::new(self.limit)],
                unshown: [0; 2],
            }))
        });
        let mut streams = streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.tails[i].push(bytes);
        if let Some(live) = &self.live {
            // Under the lock, so a marker and the bytes after it stay in order.
            if live.budget.lossless {
                // Its writers wait for room instead (`LiveBudget::room`);
                // what one write brings may overshoot the limit.
                live.budget.take(bytes.len());
                live.send(stream, bytes.to_vec());
            } else if live.budget.try_take(bytes.len()) {
                live.send_unshown(stream, &mut streams.unshown[i]);
                live.send(stream, bytes.to_vec());
            } else {
                streams.unshown[i] += bytes.len() as u64;
            }
        }
    }

    /// Renders both streams, after appending what the agent returned.
    pub(crate) fn finish(&self, stdout: &str, stderr: &str) -> (String, String) {
        // Returned text goes the same way as written text, live included.
        self.write(Stream::Stdout, stdout.as_bytes());
        self.write(Stream::Stderr, stderr.as_bytes());
        let Some(streams) = self.streams.get() else {
            return (String::new(), String::new());
        };
        let mut streams = streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = &self.live {
            for stream in [Stream::Stdout, Stream::Stderr] {
                live.send_unshown(stream, &mut streams.unshown[stream as usize]);
            }
        }
        (streams.tails[0].render(), streams.tails[1].render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_limit() {
        let mut t = TailBuffer::new(10);
        t.push(b"hello");
        t.push(b"abc");
        assert_eq!(t.render(), "helloabc");
    }

    #[test]
    fn keeps_the_tail_and_counts_what_it_dropped() {
        let mut t = TailBuffer::new(4);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.dropped(), 3);
        assert_eq!(t.render(), "[agent-33: 3 bytes truncated]\ndefg");
        t.push(b"0123456789");
        assert_eq!(t.dropped(), 3 + 4 + 6);
        assert_eq!(t.render(), "[agent-33: 13 bytes truncated]\n6789");
    }

    #[test]
    fn zero_limit_keeps_only_the_marker() {
        let mut t = TailBuffer::new(0);
        t.push(b"xyz");
        assert_eq!(t.render(), "[agent-33: 3 bytes truncated]\n");
        let empty = TailBuffer::new(0);
        assert_eq!(empty.render(), "");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut t = TailBuffer::new(16);
        t.push(&[b'a', 0xff, b'b']);
        assert_eq!(t.render(), "a\u{fffd}b");
    }
}
