//! The memory driver's peak memory for a 256 MiB resource stays within 1.1x
//! of 256 MiB: growth leaves no second copy alive. Linux only (reads the
//! process's peak RSS, `VmHWM`, after resetting it through `clear_refs`).
//! Alone in its test binary, so no other test's memory counts.

#![cfg(target_os = "linux")]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "a byte pattern and a ratio for display"
)]

use storage_core::{CancellationToken, ResourceExt};
use storage_mem::MemResource;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn current_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_256_mib_memory_resource_peaks_below_1_1_times_its_size() {
    const LEN: u64 = 256 << 20;
    let chunk: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    // Reset the peak to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let baseline = current_rss_bytes();
    let resource = MemResource::new(CancellationToken::new());
    for offset in (0..LEN).step_by(chunk.len()) {
        resource.write_at(offset, &chunk).unwrap();
    }
    resource.commit(Some(LEN)).unwrap();
    let peak = peak_rss_bytes().saturating_sub(baseline);
    let ratio = peak as f64 / LEN as f64;
    println!(
        "peak RSS above baseline: {} MiB ({ratio:.3}x of 256 MiB)",
        peak >> 20
    );
    assert!(ratio <= 1.1, "peak {ratio:.3}x of the resource size");
    assert!(
        ratio >= 0.9,
        "peak {ratio:.3}x: the measurement missed the data"
    );
    let mut last = [0u8; 1];
    assert_eq!(resource.read_at(LEN - 1, &mut last).unwrap(), 1);
    assert_eq!(last[0], chunk[chunk.len() - 1]);
}
