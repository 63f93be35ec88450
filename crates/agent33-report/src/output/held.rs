//! Task output held back until it may be printed: a bare task's stdout
//! until the task ends, a finished task's block until every earlier task
//! has been printed (`--keep-order`).
//!
//! How much waits is not ours to bound: a long first task holds back the
//! output of every later task that finishes meanwhile. So bytes are kept in
//! memory only up to a budget shared by all tasks, and beyond it appended
//! to one anonymous temporary file (deleted by the system when closed),
//! from which each task's bytes are read back when it is printed, in the
//! order they came. The file is emptied whenever no task has bytes in it.
//! Should the file fail (no space, no temporary folder), bytes stay in
//! memory: printing late beats losing output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt as _;

/// Bytes held in memory, over all tasks of one printer, before more go to
/// the temporary file.
pub(crate) const MEMORY_BUDGET: usize = 32 << 20;

/// Bytes copied from the temporary file at a time.
const READ_CHUNK: usize = 64 << 10;

/// One stretch of a task's bytes.
#[derive(Debug)]
enum Part {
    Memory(Vec<u8>),
    /// Offset and length in the temporary file.
    File(u64, u64),
}

/// Each task's held bytes, by its input position.
#[derive(Debug)]
pub(crate) struct Held {
    tasks: HashMap<u64, Vec<Part>>,
    in_memory: usize,
    budget: usize,
    spill: Option<File>,
    spill_len: u64,
    /// Tasks with at least one part in the file.
    spilled_tasks: usize,
    /// The file could not be made or written: stop trying.
    spill_broken: bool,
}

impl Held {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            tasks: HashMap::new(),
            in_memory: 0,
            budget,
            spill: None,
            spill_len: 0,
            spilled_tasks: 0,
            spill_broken: false,
        }
    }

    /// Whether `seq` has bytes held.
    pub(crate) fn has(&self, seq: u64) -> bool {
        self.tasks.contains_key(&seq)
    }

    /// Appends `bytes` to what `seq` holds.
    pub(crate) fn append(&mut self, seq: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let fits = self.in_memory + bytes.len() <= self.budget;
        let offset = if fits { None } else { self.spill_write(bytes) };
        let parts = self.tasks.entry(seq).or_default();
        match offset {
            Some(offset) => {
                let len = bytes.len() as u64;
                if !parts.iter().any(|p| matches!(p, Part::File(..))) {
                    self.spilled_tasks += 1;
                }
                match parts.last_mut() {
                    Some(Part::File(start, n)) if *start + *n == offset => *n += len,
                    _ => parts.push(Part::File(offset, len)),
                }
            }
            None => {
                self.in_memory += bytes.len();
                match parts.last_mut() {
                    Some(Part::Memory(v)) => v.extend_from_slice(bytes),
                    _ => parts.push(Part::Memory(bytes.to_vec())),
                }
            }
        }
    }

    /// Appends to the file; where the bytes went, or `None` if the file
    /// failed.
    fn spill_write(&mut self, bytes: &[u8]) -> Option<u64> {
        if self.spill_broken {
            return None;
        }
        if self.spill.is_none() {
            match tempfile::tempfile() {
                Ok(file) => self.spill = Some(file),
                Err(_) => {
                    self.spill_broken = true;
                    return None;
                }
            }
        }
        let file = self.spill.as_ref()?;
        let offset = self.spill_len;
        if file.write_all_at(bytes, offset).is_err() {
            self.spill_broken = true;
            return None;
        }
        self.spill_len += bytes.len() as u64;
        Some(offset)
    }

    /// Forgets what `seq` holds.
    pub(crate) fn discard(&mut self, seq: u64) {
        if let Some(parts) = self.tasks.remove(&seq) {
            self.forget(&parts);
        }
    }

    /// Writes what `seq` holds to `out`, in the order it came, and forgets
    /// it (also when writing fails).
    pub(crate) fn write_out(&mut self, seq: u64, out: &mut dyn Write) -> io::Result<()> {
        let Some(parts) = self.tasks.remove(&seq) else {
            return Ok(());
        };
        let written = self.copy(&parts, out);
        self.forget(&parts);
        written
    }

    fn copy(&self, parts: &[Part], out: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::new();
        for part in parts {
            match part {
                Part::Memory(bytes) => out.write_all(bytes)?,
                Part::File(start, len) => {
                    let file = self.spill.as_ref().ok_or_else(|| {
                        io::Error::other("the temporary file of held output is gone")
                    })?;
                    let end = start + len;
                    let mut at = *start;
                    while at < end {
                        let n = usize::try_from(end - at).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
                        buf.resize(n, 0);
                        file.read_exact_at(&mut buf, at)?;
                        out.write_all(&buf)?;
                        at += n as u64;
                    }
                }
            }
        }
        Ok(())
    }

    fn forget(&mut self, parts: &[Part]) {
        let mut spilled = false;
        for part in parts {
            match part {
                Part::Memory(bytes) => self.in_memory -= bytes.len(),
                Part::File(..) => spilled = true,
            }
        }
        if spilled {
            self.spilled_tasks -= 1;
            if self.spilled_tasks == 0 {
                // Nobody needs the file's bytes: start it over, so a long
                // run reuses the same space instead of growing the file.
                if let Some(file) = &self.spill {
                    if file.set_len(0).is_ok() {
                        self.spill_len = 0;
                    }
                }
            }
        }
    }

    /// Bytes held in memory now.
    #[cfg(test)]
    pub(crate) fn in_memory(&self) -> usize {
        self.in_memory
    }

    /// Bytes in the temporary file now (freed or not).
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> u64 {
        self.spill_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(held: &mut Held, seq: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        held.write_out(seq, &mut buf).expect("writes");
        buf
    }

    #[test]
    fn bytes_past_the_budget_go_to_the_file_and_come_back_in_order() {
        let mut held = Held::new(10);
        held.append(0, b"0123456");
        held.append(1, b"abc");
        // Over the budget: to the file, for either task.
        held.append(0, b"789");
        held.append(1, b"def");
        held.append(0, b"!");
        assert_eq!(held.in_memory(), 10);
        assert_eq!(held.spilled(), 7);
        assert_eq!(out(&mut held, 0), b"0123456789!");
        // Task 1 still has bytes in the file, so it is kept.
        assert_eq!(held.spilled(), 7);
        assert_eq!(held.in_memory(), 3);
        // Memory freed: new bytes fit again, after the file's.
        held.append(1, b"ghi");
        assert_eq!(out(&mut held, 1), b"abcdefghi");
        assert_eq!((held.in_memory(), held.spilled()), (0, 0));
        assert!(!held.has(1));
    }

    #[test]
    fn large_spills_are_copied_in_chunks() {
        let mut held = Held::new(0);
        let big: Vec<u8> = (0..READ_CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        held.append(5, &big[..1000]);
        held.append(5, &big[1000..]);
        assert_eq!(held.in_memory(), 0);
        assert_eq!(out(&mut held, 5), big);
    }

    #[test]
    fn discarded_bytes_free_their_space() {
        let mut held = Held::new(4);
        held.append(0, b"abcd");
        held.append(1, b"efgh");
        held.discard(0);
        held.discard(1);
        assert_eq!((held.in_memory(), held.spilled()), (0, 0));
        assert!(out(&mut held, 0).is_empty());
    }
}
