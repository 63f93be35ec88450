//! An external sort for small fixed-size records that arrive nearly in
//! order: the JSON report's index of results, attempts and ids, which come
//! in finishing order and go out in input or start order. The two differ
//! by about the number of tasks running at once, not by the number of
//! tasks.
//!
//! Records pass through a bounded min-heap on their way to a file
//! (replacement selection): the smallest goes out whenever the heap is
//! full, and a record smaller than the last one written waits for the next
//! sorted run. Nearly ordered input thus makes a single run however long it
//! is, and memory stays at the heap's bound. [`Sorted::iter`] merges the
//! runs back in order, as many times as asked.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::os::unix::fs::FileExt as _;

/// A record of the index: ordered by its key, stored in [`Self::SIZE`] bytes.
pub(crate) trait Record: Copy + Ord {
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(bytes: &[u8]) -> Self;
}

/// Records kept in memory before the smallest goes to the file: a window
/// wider than the usual parallel limits, and small enough (tens of KiB per
/// index) that taking the smallest, once per record, stays in the cache:
/// with 2,048 it took twice as long, missing the cache at each level. A
/// window narrower than the disorder only means more runs to merge.
pub(crate) const HEAP: usize = 512;

/// Collects records in any order; [`Ordered::sorted`] gives them in order.
#[derive(Debug)]
pub(crate) struct Ordered<T: Record> {
    /// Each record with the run it will be written in.
    heap: BinaryHeap<Reverse<(u32, T)>>,
    capacity: usize,
    /// The run being written and the last record written to it.
    run: u32,
    last: Option<T>,
    out: BufWriter<File>,
    /// Records written so far.
    written: u64,
    /// Where each run starts, in records; the last one ends at `written`.
    starts: Vec<u64>,
    scratch: Vec<u8>,
}

impl<T: Record> Ordered<T> {
    pub(crate) fn new(file: File, capacity: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            capacity: capacity.max(1),
            run: 0,
            last: None,
            out: BufWriter::new(file),
            written: 0,
            starts: vec![0],
            scratch: vec![0; T::SIZE],
        }
    }

    pub(crate) fn push(&mut self, record: T) -> io::Result<()> {
        if self.heap.len() >= self.capacity {
            self.write_smallest()?;
        }
        let run = match self.last {
            Some(last) if record < last => self.run + 1,
            _ => self.run,
        };
        self.heap.push(Reverse((run, record)));
        Ok(())
    }

    fn write_smallest(&mut self) -> io::Result<()> {
        let Some(Reverse((run, record))) = self.heap.pop() else {
            return Ok(());
        };
        if run != self.run {
            self.run = run;
            self.starts.push(self.written);
        }
        record.encode(&mut self.scratch);
        self.out.write_all(&self.scratch)?;
        self.last = Some(record);
        self.written += 1;
        Ok(())
    }

    /// Writes out what the heap still holds and gets ready to read.
    pub(crate) fn sorted(mut self) -> io::Result<Sorted<T>> {
        while !self.heap.is_empty() {
            self.write_smallest()?;
        }
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let ends = self.starts.iter().skip(1).copied().chain([self.written]);
        let runs = self.starts.iter().copied().zip(ends).collect();
        Ok(Sorted {
            file,
            runs,
            _record: std::marker::PhantomData,
        })
    }
}

/// The records written, in sorted runs, ready to be merged.
#[derive(Debug)]
pub(crate) struct Sorted<T> {
    file: File,
    /// Each run's first record and the one past its last.
    runs: Vec<(u64, u64)>,
    _record: std::marker::PhantomData<T>,
}

/// Bytes of read buffer shared among the runs being merged.
const READ_BUFFER: usize = 64 * 1024;

impl<T: Record> Sorted<T> {
    /// Every record, smallest first.
    pub(crate) fn iter(&self) -> Merge<'_, T> {
        let per_run = (READ_BUFFER / T::SIZE / self.runs.len().max(1)).clamp(1, 1024);
        let cursors: Vec<Cursor> = self
            .runs
            .iter()
            .map(|&(next, end)| Cursor {
                next,
                end,
                buf: Vec::new(),
                at: 0,
                per_run,
            })
            .collect();
        Merge {
            file: &self.file,
            heap: BinaryHeap::with_capacity(cursors.len()),
            cursors,
            primed: false,
        }
    }
}

/// Reads one run, a few records at a time.
#[derive(Debug)]
struct Cursor {
    /// The next record to read from the file, and the end of the run.
    next: u64,
    end: u64,
    buf: Vec<u8>,
    /// Where the next record starts in `buf`.
    at: usize,
    per_run: usize,
}

impl Cursor {
    fn read<T: Record>(&mut self, file: &File) -> io::Result<Option<T>> {
        if self.at == self.buf.len() {
            if self.next == self.end {
                return Ok(None);
            }
            let count = usize::try_from(self.end - self.next)
                .unwrap_or(usize::MAX)
                .min(self.per_run);
            self.buf.resize(count * T::SIZE, 0);
            file.read_exact_at(&mut self.buf, self.next * T::SIZE as u64)?;
            self.next += count as u64;
            self.at = 0;
        }
        let record = T::decode(&self.buf[self.at..self.at + T::SIZE]);
        self.at += T::SIZE;
        Ok(Some(record))
    }
}

/// The runs merged: every record in order.
#[derive(Debug)]
pub(crate) struct Merge<'a, T> {
    file: &'a File,
    cursors: Vec<Cursor>,
    /// The smallest unread record of each run not yet exhausted.
    heap: BinaryHeap<Reverse<(T, usize)>>,
    primed: bool,
}

impl<T: Record> Iterator for Merge<'_, T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for run in 0..self.cursors.len() {
                match self.cursors[run].read(self.file) {
                    Ok(Some(record)) => self.heap.push(Reverse((record, run))),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        let Reverse((record, run)) = self.heap.pop()?;
        match self.cursors[run].read(self.file) {
            Ok(Some(next)) => self.heap.push(Reverse((next, run))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Pair(u32, u16);

    impl Record for Pair {
        const SIZE: usize = 6;
        fn encode(&self, out: &mut [u8]) {
            out[..4].copy_from_slice(&self.0.to_le_bytes());
            out[4..6].copy_from_slice(&self.1.to_le_bytes());
        }
        fn decode(bytes: &[u8]) -> Self {
            Pair(
                u32::from_le_bytes(bytes[..4].try_into().unwrap()),
                u16::from_le_bytes(bytes[4..6].try_into().unwrap()),
            )
        }
    }

    fn sort(records: &[Pair], capacity: usize) -> (Vec<Pair>, usize) {
        let mut ordered = Ordered::new(tempfile::tempfile().unwrap(), capacity);
        for &r in records {
            ordered.push(r).unwrap();
        }
        let sorted = ordered.sorted().unwrap();
        let out: Vec<Pair> = sorted.iter().map(Result::unwrap).collect();
        // A second pass reads the same.
        let again: Vec<Pair> = sorted.iter().map(Result::unwrap).collect();
        assert_eq!(out, again);
        (out, sorted.runs.len())
    }

    proptest! {
        #[test]
        fn gives_every_record_in_order(
            records in proptest::collection::vec((0u32..200, any::<u16>()), 0..600),
            capacity in 1usize..40,
        ) {
            let records: Vec<Pair> = records.into_iter().map(|(a, b)| Pair(a, b)).collect();
            let mut expected = records.clone();
            expected.sort();
            prop_assert_eq!(sort(&records, capacity).0, expected);
        }
    }

    #[test]
    fn nearly_ordered_input_makes_one_run() {
        // Each record at most 30 places from its own: the window is wider
        // than that, so one run, however many records.
        let records: Vec<Pair> = (0..100_000u32)
            .map(|i| Pair(i + (i * 7919) % 31, 0))
            .collect();
        let (out, runs) = sort(&records, 64);
        assert_eq!(runs, 1);
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(out.len(), records.len());
    }

    #[test]
    fn reversed_input_makes_runs_of_the_heap_size() {
        let records: Vec<Pair> = (0..1_000u32).rev().map(|i| Pair(i, 0)).collect();
        let (out, runs) = sort(&records, 100);
        assert_eq!(runs, 10);
        assert_eq!(out, (0..1_000u32).map(|i| Pair(i, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert_eq!(sort(&[], 8), (vec![], 1));
    }
}
