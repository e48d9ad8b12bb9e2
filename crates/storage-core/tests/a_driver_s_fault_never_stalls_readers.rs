//! A rewrite (a cut, a restart, a replacement) keeps reads whole with a
//! sequence lock: a driver that panics in the middle of one leaves it
//! closed, so readers go on; and a reader that took its snapshot before a
//! rewrite may still be copying, so no write into bytes that were readable
//! is handed to the driver as fresh.

use std::{
    ops::Range,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::atomic::{AtomicBool, Ordering},
};

use parking_lot::Mutex;
use storage_core::{
    CancellationToken, DownloadRecord, DriverIo, DriverState, RangeSet, Resource, ResourceExt,
    StorageResult, WriteKind, testing::ReferenceDriver, testing::within,
};

/// The reference driver, telling fresh writes apart, recording their
/// ranges, and panicking in `commit` or `publish` on demand.
#[derive(Default)]
struct Faulty {
    inner: ReferenceDriver,
    panic_commit: AtomicBool,
    panic_publish: AtomicBool,
    fresh: Mutex<Vec<Range<u64>>>,
}

impl DriverIo for Faulty {
    const FRESH_WRITES: bool = true;

    type Staged<'a> = <ReferenceDriver as DriverIo>::Staged<'a>;

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        self.inner.read_at(offset, buf, effective_len)
    }

    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()> {
        if kind == WriteKind::Fresh {
            self.fresh.lock().push(offset..offset + data.len() as u64);
        }
        let kind = if kind == WriteKind::Fresh {
            WriteKind::Active
        } else {
            kind
        };
        self.inner.write(offset, data, kind)
    }

    fn commit(&self, final_len: Option<u64>, holes: &[Range<u64>]) -> StorageResult<()> {
        assert!(
            !self.panic_commit.load(Ordering::Acquire),
            "a driver bug in commit"
        );
        self.inner.commit(final_len, holes)
    }

    fn reactivate(&self, available: &RangeSet<u64>) -> StorageResult<()> {
        self.inner.reactivate(available)
    }

    fn stage(&self, data: &[u8], durable: bool) -> StorageResult<Self::Staged<'_>> {
        self.inner.stage(data, durable)
    }

    fn publish(&self, staged: Self::Staged<'_>) {
        assert!(
            !self.panic_publish.load(Ordering::Acquire),
            "a driver bug in publish"
        );
        self.inner.publish(staged);
    }

    fn sync(&self) -> StorageResult<()> {
        self.inner.sync()
    }

    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()> {
        self.inner.record(record)
    }
}

fn resource() -> Resource<Faulty> {
    Resource::from_driver(
        CancellationToken::new(),
        Faulty::default(),
        DriverState::default(),
        None,
    )
}

/// `read_at` and `read_into` of `r` return (bounded).
fn reads_return(r: &Resource<Faulty>) {
    let r = r.clone();
    within("reads after a driver's panic", move || {
        let mut buf = [0; 8];
        r.read_at(0, &mut buf).unwrap();
        let mut all = Vec::new();
        r.read_into(&mut all).unwrap();
    });
}

#[test]
fn a_panic_in_a_cutting_commit_leaves_reads_working() {
    let r = resource();
    r.write_at(0, &[b'a'; 100]).unwrap();
    r.commit(None).unwrap();
    r.reactivate().unwrap();
    r.driver().panic_commit.store(true, Ordering::Release);
    assert!(catch_unwind(AssertUnwindSafe(|| r.commit(Some(10)))).is_err());
    reads_return(&r);
}

#[test]
fn a_panic_in_publish_leaves_reads_working() {
    let r = resource();
    r.write_at(0, &[b'a'; 100]).unwrap();
    r.driver().panic_publish.store(true, Ordering::Release);
    assert!(catch_unwind(AssertUnwindSafe(|| r.replace_all(b"new", false))).is_err());
    reads_return(&r);
}

#[test]
fn no_write_into_bytes_once_readable_is_fresh() {
    let r = resource();
    r.write_at(0, &[b'a'; 100]).unwrap();
    r.restart().unwrap();
    r.write_at(0, b"new").unwrap();
    r.write_at(200, b"far").unwrap();
    assert_eq!(
        *r.driver().fresh.lock(),
        vec![0..100, 200..203],
        "a write below the end readable before the restart was fresh"
    );
}
