//! Demand first, with no wiring: a reader that seeks far ahead of a slow
//! download gets its range fetched next, on a request of its own that
//! starts where it reads; a reader that only catches up with the download
//! front starts no request. Against the test's own throttled server on
//! 127.0.0.1, whose log shows the ranges asked.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test files are a few MiB: offsets fit in usize"
)]

mod support;

use std::{
    io::{Read, Seek, SeekFrom},
    time::Duration,
};

use storage_core::{CancellationToken, ResourceCursor, ResourceExt, ResourceStatus};
use storage_fetch::{FetchOptions, Fetcher};
use storage_mem::MemResource;
use support::{LIMIT, Plan, content, fault_server, runtime, seek_and_read};

const LEN: usize = 4_000_000;

fn slow_plan(data: &[u8]) -> Plan {
    let mut plan = Plan::new(data.to_vec());
    plan.rate = Some(400_000);
    plan.latency = Duration::from_millis(20);
    plan
}

/// A runtime, an empty resource, the server with `plan`, and a fetch of
/// the server's file into the resource, running.
fn start(
    plan: Plan,
) -> (
    tokio::runtime::Runtime,
    MemResource,
    support::FaultServer,
    tokio::task::JoinHandle<Result<storage_fetch::FetchReport, storage_fetch::FetchError>>,
) {
    let runtime = runtime();
    let resource = MemResource::new(CancellationToken::new());
    let server = runtime.block_on(fault_server(plan));
    let fetch = runtime.spawn({
        let (resource, url) = (resource.clone(), server.url.clone());
        async move {
            Fetcher::new(FetchOptions::default())
                .fetch(resource, &url)
                .await
        }
    });
    (runtime, resource, server, fetch)
}

#[test]
fn a_far_seek_gets_its_range_fetched_next() {
    let data = content(1, LEN);
    let (runtime, resource, server, fetch) = start(slow_plan(&data));
    // A decoder seeks to 80 % and reads.
    let read = seek_and_read(&resource, 3_200_000, 65_536);
    assert!(
        read == data[3_200_000..3_265_536],
        "the seek read other bytes"
    );
    let asked = server.ranges_asked();
    assert!(
        asked
            .iter()
            .any(|range| range.starts_with("bytes=3200000-")),
        "no request started where the reader seeked: {asked:?}"
    );
    // The download finishes whole.
    resource.wait_range_timeout(0..LEN as u64, LIMIT).unwrap();
    let report = runtime
        .block_on(async { tokio::time::timeout(LIMIT, fetch).await })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.fetched, LEN as u64);
    assert_eq!(
        resource.status(),
        ResourceStatus::Committed {
            final_len: Some(LEN as u64)
        }
    );
    let mut all = Vec::new();
    resource.read_into(&mut all).unwrap();
    assert!(all == data);
}

#[test]
fn a_reader_at_the_download_front_starts_no_request() {
    let data = content(2, 1_000_000);
    let (runtime, resource, server, fetch) = start(slow_plan(&data));
    // A player reading in order, always waiting at the front.
    let reader = {
        let resource = resource.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            ResourceCursor::with_timeout(resource, LIMIT)
                .read_to_end(&mut all)
                .map(|_| all)
        })
    };
    let all =
        storage_core::testing::within("the in-order read", move || reader.join().unwrap()).unwrap();
    assert!(all == data);
    let report = runtime
        .block_on(async { tokio::time::timeout(LIMIT, fetch).await })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        report.requests,
        1,
        "an underrun restarted requests: {:?}",
        server.requests()
    );
}

/// A second seek does not starve the first: the in-order fill gives up its
/// slot before a seek does, and a seek that gives its slot away is asked
/// again first, so each reader is served before the in-order requests
/// reach it.
#[test]
fn two_seeks_in_a_row_are_both_served_first() {
    let data = content(3, 8_000_000);
    let mut plan = slow_plan(&data);
    plan.rate = Some(300_000);
    let (_runtime, resource, server, _fetch) = start(plan);
    // Each read reports, when done, whether the middle of the file (which
    // only the in-order requests would bring) was there yet.
    let read_at = |at: u64, len: usize| {
        let resource = resource.clone();
        std::thread::spawn(move || {
            let mut cursor = ResourceCursor::with_timeout(resource.clone(), LIMIT);
            cursor.seek(SeekFrom::Start(at)).unwrap();
            let mut buf = vec![0; len];
            cursor
                .read_exact(&mut buf)
                .map(|()| (buf, resource.contains_range(4_500_000..4_500_001)))
        })
    };
    let first = read_at(6_000_000, 200_000);
    std::thread::sleep(Duration::from_millis(50));
    let second = read_at(3_000_000, 1000);
    let (second, _) =
        storage_core::testing::within("the second seek", move || second.join().unwrap()).unwrap();
    let (first, middle_was_there) =
        storage_core::testing::within("the first seek", move || first.join().unwrap()).unwrap();
    assert!(first == data[6_000_000..6_200_000] && second == data[3_000_000..3_001_000]);
    assert!(
        !middle_was_there,
        "the first seek was served only once the second one's request reached it"
    );
    let asked = server.ranges_asked();
    for at in ["bytes=6000000-", "bytes=3000000-"] {
        assert!(
            asked.iter().any(|range| range.starts_with(at)),
            "no request where a reader seeked ({at}): {asked:?}"
        );
    }
}

/// On a slow link, a reader a second of download ahead of the front (but
/// within the 512 KiB most) is seeking, not underrunning: the window is
/// what the request delivers in about 250 ms, so it gets its own request.
#[test]
fn the_window_follows_the_rate_so_a_near_seek_on_a_slow_link_is_served() {
    let data = content(4, 2_000_000);
    let mut plan = slow_plan(&data);
    plan.rate = Some(200_000);
    let (_runtime, resource, server, _fetch) = start(plan);
    // Let the in-order request show its rate.
    resource.wait_range_timeout(0..150_000, LIMIT).unwrap();
    let front = {
        let mut at = 0;
        while resource.contains_range(at..at + 1) {
            at += 1000;
        }
        at
    };
    let target = front + 250_000;
    let read = seek_and_read(&resource, target, 1000);
    assert!(read == data[target as usize..target as usize + 1000]);
    let asked = server.ranges_asked();
    assert!(
        asked.len() >= 2,
        "the seek waited for the in-order request: {asked:?}"
    );
}
