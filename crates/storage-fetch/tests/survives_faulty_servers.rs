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
use support::{Fault, LIMIT, Plan, content, fault_server, read_all, runtime};

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

/// A 416 inside the file, or an empty 206, is a failure: retried with
/// backoff (never asked again at once, thousands of times a second), and
/// the download gives up after `retries`.
#[test]
fn answers_with_no_bytes_are_retried_with_backoff_and_bounded() {
    let data = content(8, 100_000);
    for fault in [
        Fault {
            not_satisfiable: true,
            ..Fault::default()
        },
        Fault {
            empty: true,
            ..Fault::default()
        },
    ] {
        let mut plan = Plan::new(data.clone());
        plan.faults = vec![fault.clone(); 100];
        let resource = MemResource::new(CancellationToken::new());
        resource.set_expected_len(100_000).unwrap();
        let (report, seen) = fetch(plan, &resource);
        assert!(report.is_err(), "{fault:?}: {report:?}");
        assert!(seen.len() <= 6, "{fault:?}: {} requests", seen.len());
        assert!(
            matches!(resource.status(), ResourceStatus::Failed(_)),
            "{fault:?}"
        );
    }
}

/// A 416 that names no length says nothing of where the file ends: it is a
/// failure, retried, and never commits an empty file.
#[test]
fn a_416_without_a_length_is_a_failure_not_an_empty_file() {
    let data = content(9, 100_000);
    let mut plan = Plan::new(data.clone());
    plan.faults = vec![Fault {
        status: Some(416),
        ..Fault::default()
    }];
    let resource = MemResource::new(CancellationToken::new());
    let (report, _) = fetch(plan, &resource);
    assert_eq!(report.unwrap().len, 100_000);
    assert!(read_all(&resource) == data);
}

/// A resume answered by a whole new version without any validator (a 200
/// to `If-Range`) cannot be told from a changed file, so it is taken for
/// one: the download starts over and never keeps the old bytes beside the
/// new ones.
#[test]
fn a_whole_answer_without_a_validator_to_a_resume_starts_over() {
    let old = content(10, 500_000);
    let new = content(11, 500_000);
    let mut plan = Plan::new(new.clone());
    // Version 2, whose ETag the server compares but does not send.
    plan.etag = "\"v2\"".into();
    plan.no_etag = true;
    let resource = MemResource::new(CancellationToken::new());
    resource.set_validator("\"v1\"").unwrap();
    resource.set_expected_len(500_000).unwrap();
    resource.write_at(0, &old[..200_000]).unwrap();
    let (report, seen) = fetch(plan, &resource);
    assert_eq!(report.unwrap().restarts, 1);
    assert!(read_all(&resource) == new, "two versions spliced");
    assert_eq!(seen[0].if_range.as_deref(), Some("\"v1\""));
}

/// A redirect loop is refused at once, not retried like a network fault.
#[test]
fn a_redirect_loop_fails_at_once() {
    let runtime = runtime();
    let (result, seen) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/loop", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let served = std::sync::Arc::clone(&count);
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let served = std::sync::Arc::clone(&served);
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = stream
                            .write_all(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        let resource = MemResource::new(CancellationToken::new());
        let result = tokio::time::timeout(LIMIT, Fetcher::new(options()).fetch(resource, &url)).await.unwrap();
        (result, count.load(std::sync::atomic::Ordering::SeqCst))
    });
    assert!(
        matches!(result, Err(FetchError::InvalidResponse { .. })),
        "{result:?}"
    );
    assert!(seen <= 12, "{seen} requests");
}

const FULL_DISK_CHILD: &str = "STORAGE_FETCH_FULL_DISK_CHILD";

/// In the child (under `ulimit -f`): a download larger than the file size
/// limit, a reader blocked past the limit.
#[test]
fn child_fetching_past_a_file_size_limit() {
    if std::env::var(FULL_DISK_CHILD).is_err() {
        return;
    }
    let data = content(12, 3_000_000);
    let dir = tempfile::tempdir().unwrap();
    let resource = storage_mmap::MmapResource::open(
        CancellationToken::new(),
        storage_mmap::MmapOptions::new(dir.path().join("big")),
    )
    .unwrap();
    let reader = {
        let resource = resource.clone();
        std::thread::spawn(move || resource.wait_range_timeout(2_500_000..2_500_001, LIMIT))
    };
    let result = runtime().block_on(async {
        let server = fault_server(Plan::new(data)).await;
        tokio::time::timeout(
            LIMIT,
            Fetcher::new(options()).fetch(resource.clone(), &server.url),
        )
        .await
        .expect("the fetch did not end")
    });
    let waited = reader.join().unwrap();
    println!(
        "fetch: {}; reader: {waited:?}; status: {:?}",
        result
            .as_ref()
            .map_or_else(ToString::to_string, |r| format!("{r:?}")),
        resource.status()
    );
    if matches!(result, Err(FetchError::Storage(_)))
        && matches!(waited, Err(storage_core::StorageError::Failed(_)))
    {
        println!("child ok");
    }
}

/// A write the resource refuses (a full disk, a file size limit) ends the
/// download and fails the resource, so a reader blocked on it gets an
/// error instead of waiting for good.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_fails_the_resource_so_readers_get_an_error() {
    let output = std::process::Command::new("bash")
        .args([
            "-c",
            "ulimit -f 2048 && trap '' XFSZ && exec \"$0\" --exact child_fetching_past_a_file_size_limit --nocapture --test-threads=1",
        ])
        .arg(std::env::current_exe().unwrap())
        .env(FULL_DISK_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("child ok"), "child: {stdout}");
}
