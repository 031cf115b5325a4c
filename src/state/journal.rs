//! The local backend's state journal: one record change per line, appended
//! and fsynced as each image is recorded, folded into the state file
//! (compacted) when the run saves at its end, or by the next run after a
//! crash.
//!
//! Why: rewriting a whole state file after every image makes a first apply
//! of N images cost O(N²) bytes written and parsed. Appending one line per
//! image keeps each image durable as soon as it is recorded at O(1) cost.
//!
//! Format (`state/<slug>.journal`): JSON Lines, each line a [`JournalEntry`]
//! holding the state's `lineage`, the `serial` the state has once the entry
//! is applied, the `target`, the image `address` and its new `record`
//! (absent: the record was removed).
//!
//! Replay rules, which make every crash point safe:
//! - A last line that is incomplete (no newline) or unparsable is a write
//!   cut short by a crash: it was never acknowledged, so it is ignored.
//! - An entry whose `serial` is not above the state file's was already
//!   compacted (a crash between writing the file and removing the
//!   journal): skipped.
//! - Otherwise entries must follow one another (serial + 1 each) in the
//!   file's lineage and target; anything else is reported as corrupt rather
//!   than guessed at.
//!
//! Callers must not append without the state lock held, and must not write
//! an entry whose serial does not follow the state's.

use serde::{Deserialize, Serialize};

use crate::addr::ImageAddr;
use crate::state::model::{ImageRecord, StateFile};

/// One recorded change of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub lineage: String,
    /// The state's serial once this entry is applied.
    pub serial: u64,
    pub target: String,
    pub address: ImageAddr,
    /// The image's record after the change; `None` when it was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ImageRecord>,
}

impl JournalEntry {
    /// The entry recording `state`'s current record of `address` as the
    /// change that takes the state to `serial`.
    pub fn of(state: &StateFile, address: &ImageAddr, serial: u64) -> JournalEntry {
        JournalEntry {
            lineage: state.lineage.clone(),
            serial,
            target: state.target.clone(),
            address: address.clone(),
            record: state.images.get(address).cloned(),
        }
    }

    /// One JSON line, newline-terminated.
    pub fn to_line(&self) -> Vec<u8> {
        // Cannot fail: string-keyed maps and finite JSON values only.
        let mut line = serde_json::to_vec(self).expect("journal entry serializes");
        line.push(b'\n');
        line
    }
}

/// Applies the journal `bytes` to `state` (the state file's contents).
/// Returns how many entries changed it. `Err` says why the journal cannot
/// be trusted.
pub fn replay(state: &mut StateFile, bytes: &[u8]) -> Result<usize, String> {
    let mut applied = 0;
    let mut lines = bytes.split_inclusive(|b| *b == b'\n').peekable();
    let mut number = 0;
    while let Some(line) = lines.next() {
        number += 1;
        let last = lines.peek().is_none();
        let complete = line.ends_with(b"\n");
        let entry: JournalEntry = match serde_json::from_slice(line) {
            Ok(entry) if complete => entry,
            // A write cut short by a crash: never acknowledged.
            _ if last => break,
            Err(e) => return Err(format!("line {number}: {e}")),
            Ok(_) => unreachable!("only the last line can lack its newline"),
        };
        if entry.lineage != state.lineage || entry.target != state.target {
            return Err(format!(
                "line {number} belongs to target `{}` lineage {}, but the state file is \
                 target `{}` lineage {}",
                entry.target, entry.lineage, state.target, state.lineage
            ));
        }
        if entry.serial <= state.serial {
            continue;
        }
        if entry.serial != state.serial + 1 {
            return Err(format!(
                "line {number} has serial {}, but the state is at serial {}; entries are missing",
                entry.serial, state.serial
            ));
        }
        match entry.record {
            Some(record) => {
                state.images.insert(entry.address, record);
            }
            None => {
                state.images.remove(&entry.address);
            }
        }
        state.serial = entry.serial;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::Artifact;

    fn record(id: &str) -> ImageRecord {
        ImageRecord {
            content_address: crate::addr::ContentAddress::from_recorded(format!(
                "sha256:{}",
                "a".repeat(64)
            )),
            builder: "null".to_owned(),
            artifact: Artifact {
                id: id.to_owned(),
                attributes: Default::default(),
            },
            parents: Default::default(),
            base: None,
            data: Default::default(),
            text_inputs: Default::default(),
            built_at: "2025-03-14T09:27:41Z".to_owned(),
            sbom: None,
            previous_sbom: None,
            tainted: false,
            previous: Vec::new(),
        }
    }

    fn addr(s: &str) -> ImageAddr {
        s.parse().unwrap()
    }

    /// A journal of `n` puts on top of `base`, and the state they lead to.
    fn journal(base: &StateFile, n: u64) -> (Vec<u8>, StateFile) {
        let mut state = base.clone();
        let mut bytes = Vec::new();
        for i in 1..=n {
            let a = addr(&format!("null.img{i}"));
            state.images.insert(a.clone(), record(&format!("null:{i}")));
            state.serial += 1;
            bytes.extend(JournalEntry::of(&state, &a, state.serial).to_line());
        }
        (bytes, state)
    }

    #[test]
    fn replay_applies_entries_in_order_and_removals() {
        let base = StateFile::new("local");
        let (mut bytes, mut expected) = journal(&base, 3);
        expected.images.remove(&addr("null.img2"));
        expected.serial += 1;
        bytes.extend(JournalEntry::of(&expected, &addr("null.img2"), expected.serial).to_line());
        let mut state = base.clone();
        assert_eq!(replay(&mut state, &bytes), Ok(4));
        assert_eq!(state, expected);
    }

    #[test]
    fn a_torn_last_line_is_ignored_a_torn_middle_line_is_not() {
        let base = StateFile::new("local");
        let (bytes, _) = journal(&base, 2);
        let first_len = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        // Every cut inside the second line keeps exactly the first entry.
        for cut in first_len..bytes.len() {
            let mut state = base.clone();
            assert_eq!(replay(&mut state, &bytes[..cut]), Ok(1), "cut at {cut}");
            assert_eq!(state.serial, 1);
        }
        let mut garbage = bytes[..first_len - 5].to_vec();
        garbage.push(b'\n');
        garbage.extend(&bytes[first_len..]);
        let err = replay(&mut base.clone(), &garbage).unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
    }

    #[test]
    fn entries_already_compacted_are_skipped_and_gaps_refused() {
        let base = StateFile::new("local");
        let (bytes, full) = journal(&base, 3);
        // The file was written with all three (crash before the journal
        // was removed): nothing changes.
        let mut state = full.clone();
        assert_eq!(replay(&mut state, &bytes), Ok(0));
        assert_eq!(state, full);
        // An entry missing in the middle.
        let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        let gap = [lines[0], lines[2]].concat();
        let err = replay(&mut base.clone(), &gap).unwrap_err();
        assert!(err.contains("entries are missing"), "{err}");
        // Another lineage.
        let stranger = StateFile::new("local");
        let err = replay(&mut stranger.clone(), &bytes).unwrap_err();
        assert!(err.contains("lineage"), "{err}");
    }
}
