//! The run's events on their way out: collected per turn of the loop and
//! sent as one batch, with the consumer's backlog counted (backpressure).

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::capture::{LiveBudget, LiveSink};
use crate::event::{Backlog, Batch, Event, SpentBatches};
use crate::task::TaskId;

/// About how many events one turn of the loop makes before it sends them.
pub(super) const TURN_EVENTS: usize = 1024;

pub(super) struct Outbox {
    /// Events of the current turn of the loop, sent as one batch: one
    /// channel operation and at most one wake-up per turn, not per event.
    batch: Batch,
    events: UnboundedSender<Batch>,
    spent: Arc<SpentBatches>,
    pub(super) backlog: Arc<Backlog>,
    live_budget: Arc<LiveBudget>,
}

impl Outbox {
    pub(super) fn new(
        events: UnboundedSender<Batch>,
        spent: Arc<SpentBatches>,
        backlog: Arc<Backlog>,
        live_budget: Arc<LiveBudget>,
    ) -> Self {
        Self {
            batch: Batch::new(),
            events,
            spent,
            backlog,
            live_budget,
        }
    }

    pub(super) fn emit(&mut self, event: Event) {
        self.batch.push_back(event);
    }

    /// Whether this turn made its share of events.
    pub(super) fn turn_is_full(&self) -> bool {
        self.batch.len() >= TURN_EVENTS
    }

    /// Whether the consumer is too far behind to make more work for it.
    pub(super) fn backlogged(&self) -> bool {
        self.backlog.is_full()
    }

    pub(super) fn flush(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, self.spent.take());
            self.backlog.sent(batch.len());
            // A closed receiver means nobody watches; the run goes on regardless.
            let _ = self.events.send(batch);
        }
    }

    /// Where an attempt's live output goes (`--output stream`).
    pub(super) fn live_sink(&self, seq: u64, id: TaskId) -> LiveSink {
        LiveSink {
            seq,
            id,
            events: self.events.clone(),
            budget: Arc::clone(&self.live_budget),
            backlog: Arc::clone(&self.backlog),
        }
    }
}
