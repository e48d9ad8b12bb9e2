//! A read that a replacement overtakes reads again; bytes its first attempt
//! copied past the count it finally returns must not be left in the buffer
//! (they are the old contents, which the caller was told are gone).

use std::{
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use storage_core::{
    CancellationToken, DownloadRecord, DriverIo, DriverState, RangeSet, Resource, ResourceExt,
    StorageResult, WriteKind, testing::ReferenceDriver,
};

/// The reference driver, whose next `armed` reads each stop after their
/// copy until the test lets them go.
#[derive(Default)]
struct Gated {
    inner: ReferenceDriver,
    armed: AtomicUsize,
    entered: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl DriverIo for Gated {
    const FRESH_WRITES: bool = false;

    type Staged<'a> = <ReferenceDriver as DriverIo>::Staged<'a>;

    fn read_at(&self, offset: u64, buf: &mut [u8], effective_len: u64) -> StorageResult<usize> {
        let count = self.inner.read_at(offset, buf, effective_len)?;
        let gated = self
            .armed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if gated {
            if let Some(entered) = self.entered.lock().as_ref() {
                let _ = entered.send(());
            }
            if let Some(go) = self.go.lock().as_ref() {
                go.recv_timeout(Duration::from_secs(10))
                    .expect("the test lets the read go on");
            }
        }
        Ok(count)
    }

    fn write(&self, offset: u64, data: &[u8], kind: WriteKind<'_>) -> StorageResult<()> {
        self.inner.write(offset, data, kind)
    }

    fn commit(&self, final_len: Option<u64>, holes: &[Range<u64>]) -> StorageResult<()> {
        self.inner.commit(final_len, holes)
    }

    fn reactivate(&self, available: &RangeSet<u64>) -> StorageResult<()> {
        self.inner.reactivate(available)
    }

    fn stage(&self, data: &[u8], durable: bool) -> StorageResult<Self::Staged<'_>> {
        self.inner.stage(data, durable)
    }

    fn publish(&self, staged: Self::Staged<'_>) {
        self.inner.publish(staged);
    }

    fn sync(&self) -> StorageResult<()> {
        self.inner.sync()
    }

    fn record(&self, record: DownloadRecord<'_>) -> StorageResult<()> {
        self.inner.record(record)
    }
}

/// A resource over a gated driver, with the channels that see a gated read
/// arrive and let it go.
fn gated() -> (Arc<Resource<Gated>>, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let driver = Gated {
        entered: Mutex::new(Some(entered_tx)),
        go: Mutex::new(Some(go_rx)),
        ..Gated::default()
    };
    let resource = Arc::new(Resource::from_driver(
        CancellationToken::new(),
        driver,
        DriverState::default(),
        None,
    ));
    (resource, entered, go)
}

/// Writes "old secret", then reads ten bytes at 0 while each of
/// `replacements` in turn overtakes an attempt of the read (replaced while
/// the attempt is in the driver, its copy done); returns what the read gave.
fn read_overtaken_by(replacements: &[&str]) -> (usize, [u8; 10]) {
    let (resource, entered, go) = gated();
    resource.write_all(b"old secret").unwrap();
    resource
        .driver()
        .armed
        .store(replacements.len(), Ordering::Release);
    let reader = {
        let resource = Arc::clone(&resource);
        std::thread::spawn(move || {
            let mut buf = [0xEE; 10];
            let count = resource.read_at(0, &mut buf).unwrap();
            (count, buf)
        })
    };
    for contents in replacements {
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("an attempt reached the driver");
        resource.replace_all(contents.as_bytes(), false).unwrap();
        go.send(()).unwrap();
    }
    let read = reader.join().unwrap();
    assert_eq!(
        resource.driver().armed.load(Ordering::Acquire),
        0,
        "every gated attempt ran"
    );
    read
}

#[test]
fn a_read_raced_by_a_replacement_leaves_no_old_bytes_past_its_count() {
    // The first attempt copied all ten old bytes; the file was replaced by
    // a shorter one before the read returned.
    let (count, buf) = read_overtaken_by(&["new"]);
    assert_eq!(count, 3);
    assert_eq!(&buf[..3], b"new");
    assert_eq!(
        &buf[3..],
        &[0; 7],
        "bytes of the old contents were left past the count"
    );
}

/// Overtaken again and again, a read ends with rewrites held off (the
/// writer lock); what the discarded attempts left past its count is zeroed
/// on that path too.
#[test]
fn a_read_overtaken_until_it_holds_rewrites_off_leaves_no_old_bytes_either() {
    // Every attempt before the one under the writer lock is overtaken.
    let (count, buf) = read_overtaken_by(&["0123456789", "abcdefghi", "ABCDEFGH", "new"]);
    assert_eq!(count, 3);
    assert_eq!(&buf[..3], b"new");
    assert_eq!(
        &buf[3..],
        &[0; 7],
        "bytes of a discarded attempt were left past the count"
    );
}
