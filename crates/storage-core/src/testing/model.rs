//! The model case: random operation sequences against a plain model of a
//! resource (proptest).

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::ops::Range;

use proptest::{prelude::*, test_runner::TestRunner};

use super::Harness;
use crate::{ResourceExt, ResourceStatus, StorageError, WaitOutcome};

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    Commit(Option<u64>),
    Fail,
    Reactivate,
    Read(u64, usize),
    Wait(u64, u64),
    Expect(u64),
}

const UNIVERSE: u64 = 48;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..UNIVERSE, proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(at, data)| Op::Write(at, data)),
        1 => proptest::option::of(0..UNIVERSE).prop_map(Op::Commit),
        1 => Just(Op::Fail),
        2 => Just(Op::Reactivate),
        3 => (0..UNIVERSE + 8, 0..24usize).prop_map(|(at, len)| Op::Read(at, len)),
        3 => (0..UNIVERSE + 8, 0..UNIVERSE + 8).prop_map(|(a, b)| Op::Wait(a, b)),
        1 => (0..UNIVERSE + 8).prop_map(Op::Expect),
    ]
}

/// The reference: one optional byte per offset and the lifecycle.
#[derive(Debug, Default)]
struct Model {
    bytes: Vec<Option<u8>>,
    #[allow(
        clippy::option_option,
        reason = "not committed / committed(None) / committed(Some(n))"
    )]
    committed: Option<Option<u64>>,
    failed: bool,
    /// The length given to `set_expected_len` (kept until reactivate).
    expected: Option<u64>,
}

impl Model {
    fn byte(&self, at: u64) -> Option<u8> {
        self.bytes
            .get(usize::try_from(at).unwrap())
            .copied()
            .flatten()
    }

    fn set(&mut self, at: u64, value: Option<u8>) {
        let at = usize::try_from(at).unwrap();
        if self.bytes.len() <= at {
            self.bytes.resize(at + 1, None);
        }
        self.bytes[at] = value;
    }

    fn extent(&self) -> u64 {
        self.bytes
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i as u64 + 1)
    }

    fn covered(&self, range: Range<u64>) -> bool {
        range.into_iter().all(|at| self.byte(at).is_some())
    }

    /// The end nothing passes: the final length, else the expected one.
    /// A failed resource forgets its final length (as `len()` does) but
    /// not the expected one.
    fn known_end(&self) -> Option<u64> {
        match self.committed {
            Some(final_len) if !self.failed => final_len,
            // A failure keeps the length a commit fixed.
            Some(Some(n)) => self.expected.or(Some(n)),
            _ => self.expected,
        }
    }

    fn readable(&self) -> u64 {
        match self.committed {
            Some(Some(n)) => n,
            _ => self.extent(),
        }
    }
}

/// `set_expected_len(n)` against the model's rules.
fn check_expect<R: ResourceExt>(r: &R, model: &mut Model, n: u64) -> Result<(), TestCaseError> {
    let result = r.set_expected_len(n);
    let current = match model.committed {
        Some(final_len) => final_len,
        None => model.expected,
    };
    if model.failed {
        prop_assert!(matches!(result, Err(StorageError::Failed(_))));
    } else if model.committed == Some(None) {
        prop_assert!(matches!(result, Err(StorageError::Committed)));
    } else if let Some(e) = current {
        if e == n {
            prop_assert!(result.is_ok(), "{:?}", result);
        } else {
            prop_assert!(
                matches!(result, Err(StorageError::LengthMismatch { .. })),
                "{:?}",
                result
            );
        }
    } else if model.extent() > n {
        prop_assert!(
            matches!(result, Err(StorageError::PastExpectedLen { .. })),
            "{:?}",
            result
        );
    } else {
        prop_assert!(result.is_ok(), "{:?}", result);
        model.expected = Some(n);
    }
    prop_assert_eq!(r.expected_len(), model.known_end());
    Ok(())
}

/// `commit(len)` against the model's rules.
fn check_commit<R: ResourceExt>(
    r: &R,
    model: &mut Model,
    len: Option<u64>,
) -> Result<(), TestCaseError> {
    let result = r.commit(len);
    let expected = model.expected.filter(|_| model.committed.is_none());
    if model.failed {
        prop_assert!(matches!(result, Err(StorageError::Failed(_))));
    } else if let (Some(e), Some(n)) = (expected, len)
        && n != e
    {
        prop_assert!(
            matches!(result, Err(StorageError::LengthMismatch { .. })),
            "{:?}",
            result
        );
    } else if let (Some(e), None) = (expected, len)
        && !model.covered(0..e)
    {
        prop_assert!(
            matches!(result, Err(StorageError::Incomplete { .. })),
            "{:?}",
            result
        );
    } else {
        // commit(None) with everything expected there: Some(e).
        let len = len.or(expected);
        prop_assert!(result.is_ok(), "{:?}", result);
        if model.committed.is_none() {
            if let Some(n) = len {
                let end = model.bytes.len() as u64;
                for at in n..end {
                    model.set(at, None);
                }
                for at in 0..n {
                    if model.byte(at).is_none() {
                        model.set(at, Some(0));
                    }
                }
            }
            model.committed = Some(len);
        }
    }
    Ok(())
}

fn check_step<R: ResourceExt>(r: &R, model: &mut Model, op: Op) -> Result<(), TestCaseError> {
    match op {
        Op::Write(at, data) => {
            let result = r.write_at(at, &data);
            if model.failed {
                prop_assert!(matches!(result, Err(StorageError::Failed(_))));
            } else if model.committed.is_some() {
                prop_assert!(matches!(result, Err(StorageError::Committed)));
            } else if model.expected.is_some_and(|e| at + data.len() as u64 > e) {
                prop_assert!(
                    matches!(result, Err(StorageError::PastExpectedLen { .. })),
                    "{:?}",
                    result
                );
            } else {
                prop_assert!(result.is_ok(), "{:?}", result);
                for (i, byte) in data.into_iter().enumerate() {
                    model.set(at + i as u64, Some(byte));
                }
            }
        }
        Op::Commit(len) => check_commit(r, model, len)?,
        Op::Fail => {
            r.fail("model".into());
            model.failed = true;
        }
        Op::Reactivate => {
            prop_assert!(r.reactivate().is_ok());
            if model.failed || model.committed.is_some() {
                model.expected = None;
            }
            model.failed = false;
            model.committed = None;
        }
        Op::Expect(n) => check_expect(r, model, n)?,
        Op::Read(at, len) => {
            let mut buf = vec![0xEE; len];
            let result = r.read_at(at, &mut buf);
            if model.failed {
                prop_assert!(matches!(result, Err(StorageError::Failed(_))));
            } else {
                let end = (at + len as u64).min(model.readable()).max(at);
                let expected: Vec<u8> = (at..end).map(|i| model.byte(i).unwrap_or(0)).collect();
                let n = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&buf[..n], &expected[..]);
            }
        }
        Op::Wait(a, b) => {
            let range = a.min(b)..a.max(b);
            let expected = if model.failed {
                None
            } else if range.is_empty() || model.covered(range.clone()) {
                Some(WaitOutcome::Ready)
            } else {
                match (model.committed, model.known_end()) {
                    (_, Some(n))
                        if range.start < n && model.covered(range.start..range.end.min(n)) =>
                    {
                        Some(WaitOutcome::Ready)
                    }
                    (_, Some(n)) if range.start >= n => Some(WaitOutcome::Eof),
                    (Some(_), _) => Some(WaitOutcome::Eof),
                    // Would block: the state must say the bytes are missing.
                    (None, _) => {
                        prop_assert!(!r.contains_range(range));
                        return Ok(());
                    }
                }
            };
            let result = r.wait_range(range.clone());
            match expected {
                None => prop_assert!(matches!(result, Err(StorageError::Failed(_)))),
                Some(outcome) => prop_assert_eq!(result.ok(), Some(outcome), "{:?}", range),
            }
        }
    }
    let status = r.status();
    let expected = if model.failed {
        ResourceStatus::Failed("model".into())
    } else if let Some(final_len) = model.committed {
        ResourceStatus::Committed { final_len }
    } else {
        ResourceStatus::Active
    };
    prop_assert_eq!(status, expected);
    Ok(())
}

pub fn operations_match_the_model<H: Harness>(h: &H) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let r = h.fresh();
        let mut model = Model::default();
        for op in ops {
            check_step(&r, &mut model, op)?;
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
