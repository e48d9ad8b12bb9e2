//! The cursor's retries, run against every driver: interrupts and
//! timeouts of a read.

#![allow(
    missing_docs,
    reason = "each case is named for what it checks; the macro is the API"
)]

use std::{
    io::{self, Read},
    thread,
    time::{Duration, Instant},
};

use crate::{ResourceCursor, ResourceExt};

use super::{Harness, wait_for_count, within};

pub fn cursor_retries_interrupts_unless_told_to_report_them<H: Harness>(h: &H) {
    let r = h.fresh();
    let reader = {
        let r = r.clone();
        thread::spawn(move || {
            let mut buf = [0; 8];
            let count = ResourceCursor::new(r).read(&mut buf)?;
            Ok::<_, io::Error>(buf[..count].to_vec())
        })
    };
    wait_for_count("cursor parked", 1, || h.waiters(&r));
    for _ in 0..3 {
        r.interrupt();
        // The read goes back to waiting: parked again, not returned.
        wait_for_count("cursor parked again", 1, || h.waiters(&r));
    }
    assert!(!reader.is_finished(), "an interrupt ended a retrying read");
    r.write_at(0, b"data").unwrap();
    let read = within("retrying cursor", move || reader.join().unwrap()).unwrap();
    assert_eq!(read, b"data");
}

pub fn cursor_timeout_holds_across_retried_interrupts<H: Harness>(h: &H) {
    let r = h.fresh();
    let timeout = Duration::from_millis(100);
    let reader = {
        let r = r.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let result = ResourceCursor::with_timeout(r, timeout).read(&mut [0; 4]);
            (result.map_err(|e| e.kind()), started.elapsed())
        })
    };
    let interrupter = {
        let r = r.clone();
        thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < timeout * 4 {
                r.interrupt();
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (result, elapsed) = within("timed cursor under interrupts", move || {
        reader.join().unwrap()
    });
    interrupter.join().unwrap();
    assert_eq!(result, Err(io::ErrorKind::TimedOut));
    assert!(elapsed >= timeout, "gave up early: {elapsed:?}");
    assert!(
        elapsed < timeout * 3,
        "interrupts extended the timeout: {elapsed:?}"
    );
}
