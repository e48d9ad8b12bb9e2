//! Servers as they are, from a small server of the test's own on
//! 127.0.0.1: a connection dropped mid-body, a 503, a stall past the read
//! timeout — each retried from where the bytes stopped; a server without
//! range support (read from the start, skipping what is there); no length
//! at all (committed at the end of the body); a length that lies (retried,
//! then the resource fails: never committed short); a 416 on a resume past
//! the end. Every committed byte equals the source; no wait is unbounded.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test files are a few MiB: offsets fit in usize"
)]

mod support;

use std::time::Duration;

use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
use storage_fetch::{FetchError, FetchOptions, FetchReport, Fetcher};
use storage_mem::MemResource;
use support::{Fault, LIMIT, Plan, content, fault_server, runtime};

fn options() -> FetchOptions {
    FetchOptions {
        backoff: Duration::from_millis(10),
        read_timeout: Duration::from_millis(500),
        ..FetchOptions::default()
    }
}

/// Fetches `plan`'s body into `resource` from a fault server.
fn fetch(
    plan: Plan,
    resource: &MemResource,
) -> (Result<FetchReport, FetchError>, Vec<support::Seen>) {
    runtime().block_on(async {
        let server = fault_server(plan).await;
        let result = tokio::time::timeout(
            LIMIT,
            Fetcher::new(options()).fetch(resource.clone(), &server.url),
        )
        .await
        .expect("the fetch did not end");
        (result, server.requests())
    })
}

fn read_all(resource: &impl ResourceExt) -> Vec<u8> {
    let mut all = Vec::new();
    resource.read_into(&mut all).unwrap();
    all
}

#[test]
fn drops_stalls_and_503s_are_retried_from_where_the_bytes_stopped() {
    let data = content(1, 2_000_000);
    let mut plan = Plan::new(data.clone());
    plan.faults = vec![
        Fault {
            drop_after: Some(300_000),
            ..Fault::default()
        },
        Fault {
            status: Some(503),
            ..Fault::default()
        },
        Fault {
            stall_after: Some(100_000),
            ..Fault::default()
        },
    ];
    let resource = MemResource::new(CancellationToken::new());
    let (report, seen) = fetch(plan, &resource);
    let report = report.unwrap();
    assert!(read_all(&resource) == data);
    assert_eq!(report.retries, 3, "{seen:?}");
    assert_eq!(report.fetched, 2_000_000);
    // The retries resumed where the bytes stopped.
    assert_eq!(seen[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(seen[3].range.as_deref(), Some("bytes=400000-"));
}

#[test]
fn a_server_without_ranges_is_read_from_the_start_skipping_what_is_there() {
    let data = content(2, 1_000_000);
    let mut plan = Plan::new(data.clone());
    plan.ranges = false;
    let resource = MemResource::new(CancellationToken::new());
    resource.write_at(0, &data[..250_000]).unwrap();
    let (report, seen) = fetch(plan, &resource);
    let report = report.unwrap();
    assert!(read_all(&resource) == data);
    assert_eq!((report.fetched, report.skipped), (750_000, 250_000));
    assert_eq!(seen.len(), 1);
}

#[test]
fn an_unknown_length_is_committed_at_the_end_of_the_body() {
    let data = content(3, 700_000);
    for ranges in [true, false] {
        let mut plan = Plan::new(data.clone());
        plan.unknown_length = true;
        plan.ranges = ranges;
        let resource = MemResource::new(CancellationToken::new());
        let (report, _) = fetch(plan, &resource);
        assert_eq!(report.unwrap().len, 700_000);
        assert_eq!(
            resource.status(),
            ResourceStatus::Committed {
                final_len: Some(700_000)
            }
        );
        assert!(read_all(&resource) == data);
    }
}

#[test]
fn a_length_that_lies_is_never_committed_short() {
    let data = content(4, 400_000);
    let mut plan = Plan::new(data);
    // Every answer declares more than it sends, then closes.
    plan.faults = vec![
        Fault {
            lie_length: Some(500_000),
            ..Fault::default()
        };
        20
    ];
    let resource = MemResource::new(CancellationToken::new());
    let (report, seen) = fetch(plan, &resource);
    // The short body is retried; the retry's answer (416: the file ends
    // where the bytes stopped) contradicts the declared length, so the
    // download restarts, and gives up when it keeps changing.
    let error = report.unwrap_err();
    assert!(
        matches!(
            error,
            FetchError::InvalidResponse { .. } | FetchError::Network { .. }
        ),
        "{error}"
    );
    assert!(matches!(resource.status(), ResourceStatus::Failed(_)));
    assert!(seen.len() <= 20, "{} requests: not bounded", seen.len());
}

#[test]
fn a_resume_past_the_end_learns_the_length_from_the_416() {
    let data = content(5, 300_000);
    let plan = Plan::new(data.clone());
    // Everything there, the length unknown (a download without a length
    // cut by a kill before its commit).
    let resource = MemResource::new(CancellationToken::new());
    resource.write_at(0, &data).unwrap();
    let (report, seen) = fetch(plan, &resource);
    assert_eq!(report.unwrap().fetched, 0);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(
        resource.status(),
        ResourceStatus::Committed {
            final_len: Some(300_000)
        }
    );
}

#[test]
fn a_refusal_fails_the_resource_at_once() {
    let data = content(6, 1000);
    let mut plan = Plan::new(data);
    plan.faults = vec![Fault {
        status: Some(403),
        ..Fault::default()
    }];
    let resource = MemResource::new(CancellationToken::new());
    let (report, seen) = fetch(plan, &resource);
    assert!(matches!(
        report,
        Err(FetchError::Status { status: 403, .. })
    ));
    assert_eq!(seen.len(), 1, "a refusal is not retried");
    assert!(matches!(resource.status(), ResourceStatus::Failed(_)));
}

#[test]
fn cancelling_the_resource_stops_a_stalled_download() {
    let data = content(7, 1_000_000);
    let mut plan = Plan::new(data);
    plan.faults = vec![Fault {
        stall_after: Some(1000),
        ..Fault::default()
    }];
    let cancel = CancellationToken::new();
    let resource = MemResource::new(cancel.clone());
    let result = runtime().block_on(async {
        let server = fault_server(plan).await;
        let slow = FetchOptions {
            read_timeout: LIMIT,
            ..FetchOptions::default()
        };
        let fetch = tokio::spawn({
            let resource = resource.clone();
            async move { Fetcher::new(slow).fetch(resource, &server.url).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), fetch).await
    });
    let result = result.expect("a cancelled download went on").unwrap();
    assert!(matches!(result, Err(FetchError::Cancelled)), "{result:?}");
}
