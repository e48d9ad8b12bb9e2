//! A process fetching into a `Cache` is killed (SIGKILL) at random
//! instants, then the download is resumed: the entry reopens with only
//! true bytes, its length and validator known before any network; the
//! resume asks for the same version only (`If-Range`) and fetches exactly
//! what is missing; the result equals the source.

#![cfg(unix)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "test files are a few MiB: offsets fit in usize"
)]

mod support;

use std::time::Duration;

use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, testing::retry_locked};
use storage_fetch::{FetchOptions, Fetcher};
use support::{LIMIT, Plan, content, fault_server, runtime};

const CHILD_ENV: &str = "STORAGE_FETCH_KILL_CHILD";
const LEN: usize = 3_000_000;

/// The child: fetches the URL into the cache until killed.
#[test]
fn child_fetching_into_the_cache() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, url) = arg.split_once('|').unwrap();
    let cache = Cache::open(dir, CacheOptions::default()).unwrap();
    let entry = cache.resource(url, CancellationToken::new()).unwrap();
    println!("ready");
    let runtime = runtime();
    let _ = runtime.block_on(Fetcher::new(FetchOptions::default()).fetch(entry, url));
    std::thread::sleep(LIMIT);
}

#[test]
fn a_download_killed_at_random_instants_resumes_with_true_bytes_only() {
    let data = content(9, LEN);
    let runtime = runtime();
    let mut plan = Plan::new(data.clone());
    plan.rate = Some(500_000);
    let server = runtime.block_on(fault_server(plan));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::from(d.subsec_nanos()));
    for round in 0..2u64 {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let before = server.requests().len();
        let mut child = storage_core::testing::spawn_ready_child(
            "child_fetching_into_the_cache",
            CHILD_ENV,
            &format!("{}|{}", cache_dir.display(), server.url),
        );
        // Between 2 and 4 s into a 6 s download.
        let after = Duration::from_millis(2000 + (nanos >> (round * 8)) % 2000);
        std::thread::sleep(after);
        child.kill().unwrap();
        child.wait().unwrap();
        let label = format!("round {round}, killed after {after:?}");

        let cache = retry_locked(|| Cache::open(&cache_dir, CacheOptions::default())).unwrap();
        let entry = cache
            .resource(&server.url, CancellationToken::new())
            .unwrap();
        assert_eq!(entry.status(), ResourceStatus::Active, "{label}");
        assert_eq!(
            entry.expected_len(),
            Some(LEN as u64),
            "{label}: the length, offline"
        );
        assert_eq!(
            entry.validator().as_deref(),
            Some("\"v1\""),
            "{label}: the validator, offline"
        );
        // Only true bytes.
        let mut present = 0;
        let mut from = 0;
        while from < LEN as u64 {
            let gap = entry
                .next_gap(from, LEN as u64)
                .unwrap_or(LEN as u64..LEN as u64);
            let mut bytes = vec![0; (gap.start - from) as usize];
            entry.read_at(from, &mut bytes).unwrap();
            assert!(
                bytes == data[from as usize..gap.start as usize],
                "{label}: wrong bytes in {from}..{}",
                gap.start
            );
            present += gap.start - from;
            from = gap.end;
        }
        assert!(
            present > 0,
            "{label}: nothing resumed after seconds of downloading"
        );
        let report = runtime
            .block_on(async {
                tokio::time::timeout(
                    LIMIT,
                    Fetcher::new(FetchOptions::default()).fetch(entry.clone(), &server.url),
                )
                .await
            })
            .unwrap()
            .unwrap();
        assert_eq!(report.skipped, present, "{label}");
        assert_eq!(
            report.fetched,
            LEN as u64 - present,
            "{label}: bytes fetched again"
        );
        let resumed = &server.requests()[before..];
        let resume = resumed.iter().rev().find(|seen| seen.if_range.is_some());
        assert_eq!(
            resume.and_then(|seen| seen.if_range.as_deref()),
            Some("\"v1\""),
            "{label}: the resume did not ask for its version"
        );
        let mut all = Vec::new();
        entry.read_into(&mut all).unwrap();
        assert!(all == data, "{label}: the result differs");
        println!("{label}: {present} B resumed, {} B fetched", report.fetched);
    }
}
