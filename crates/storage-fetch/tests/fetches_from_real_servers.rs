//! Ordinary downloads from real servers on 127.0.0.1 (tower-http's
//! `ServeDir`, and the test's own server where a request log is needed):
//! the bytes equal the file and the resource is committed; a committed
//! resource makes no request; bytes already there are never fetched again;
//! a missing file fails the resource, so a blocked reader gets an error; a
//! file that changed on the server is fetched afresh, never spliced; a
//! redirect is followed.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test files are a few MiB: offsets fit in usize"
)]

mod support;

use std::time::Duration;

use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError};
use storage_fetch::{FetchError, FetchOptions, Fetcher};
use storage_mem::MemResource;
use storage_mmap::{MmapOptions, MmapResource};
use support::{LIMIT, Plan, content, fault_server, read_all, runtime, serve_dir};

#[test]
fn a_download_equals_the_file_and_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(1, 3_000_000);
    std::fs::write(dir.path().join("track.flac"), &data).unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let base = serve_dir(dir.path()).await;
        let fetcher = Fetcher::new(FetchOptions::default());
        // In memory and in a file.
        let memory = MemResource::new(CancellationToken::new());
        let report = tokio::time::timeout(
            LIMIT,
            fetcher.fetch(memory.clone(), &format!("{base}/track.flac")),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            (report.len, report.fetched, report.skipped),
            (3_000_000, 3_000_000, 0)
        );
        assert!(read_all(&memory) == data);
        let files = tempfile::tempdir().unwrap();
        let file = MmapResource::open(
            CancellationToken::new(),
            MmapOptions::new(files.path().join("t")),
        )
        .unwrap();
        let report = tokio::time::timeout(
            LIMIT,
            fetcher.fetch(file.clone(), &format!("{base}/track.flac")),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            file.status(),
            ResourceStatus::Committed {
                final_len: Some(3_000_000)
            }
        );
        assert_eq!(report.len, 3_000_000);
        assert!(read_all(&file) == data);
    });
}

#[test]
fn a_committed_resource_makes_no_request_and_present_bytes_are_not_fetched_again() {
    let data = content(2, 1_000_000);
    let runtime = runtime();
    runtime.block_on(async {
        let server = fault_server(Plan::new(data.clone())).await;
        let fetcher = Fetcher::new(FetchOptions::default());
        let done = MemResource::new(CancellationToken::new());
        done.write_all(&data).unwrap();
        let report = fetcher.fetch(done, &server.url).await.unwrap();
        assert_eq!(report.requests, 0);
        assert!(
            server.requests().is_empty(),
            "a request for a committed resource"
        );

        // Half there (a resumed download): only the rest is fetched.
        let partial = MemResource::new(CancellationToken::new());
        partial.write_at(200_000, &data[200_000..700_000]).unwrap();
        let report = tokio::time::timeout(LIMIT, fetcher.fetch(partial.clone(), &server.url))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.skipped, 500_000);
        assert_eq!(report.fetched, 500_000);
        assert!(read_all(&partial) == data);
        let asked = server.ranges_asked();
        assert!(
            asked
                .iter()
                .all(|range| !range.starts_with("bytes=2") || range == "bytes=200000-"),
            "{asked:?}"
        );
    });
}

#[test]
fn a_missing_file_fails_the_resource_and_a_blocked_reader_gets_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let resource = MemResource::new(CancellationToken::new());
    let reader = {
        let resource = resource.clone();
        std::thread::spawn(move || resource.wait_range_timeout(0..10, LIMIT))
    };
    let error = runtime.block_on(async {
        let base = serve_dir(dir.path()).await;
        Fetcher::new(FetchOptions::default())
            .fetch(resource.clone(), &format!("{base}/missing.mp3"))
            .await
            .unwrap_err()
    });
    assert!(
        matches!(error, FetchError::Status { status: 404, .. }),
        "{error}"
    );
    assert!(matches!(resource.status(), ResourceStatus::Failed(_)));
    let waited = reader.join().unwrap();
    assert!(matches!(waited, Err(StorageError::Failed(_))), "{waited:?}");
}

#[test]
fn a_file_changed_on_the_server_is_fetched_afresh_never_spliced() {
    let old = content(3, 800_000);
    let new = content(4, 900_000);
    let runtime = runtime();
    runtime.block_on(async {
        let server = fault_server(Plan::new(new.clone())).await;
        server.set_body(new.clone(), "\"v2\"");
        // An earlier run of the old version left half of it, with its
        // validator and length.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("track");
        {
            let earlier =
                MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).unwrap();
            earlier.set_validator("\"v1\"").unwrap();
            earlier.set_expected_len(800_000).unwrap();
            earlier.write_at(0, &old[..400_000]).unwrap();
        }
        let resumed =
            MmapResource::open(CancellationToken::new(), MmapOptions::new(&path)).unwrap();
        assert_eq!(
            resumed.validator().as_deref(),
            Some("\"v1\""),
            "kept in the journal"
        );
        let report = tokio::time::timeout(
            LIMIT,
            Fetcher::new(FetchOptions::default()).fetch(resumed.clone(), &server.url),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(report.restarts, 1);
        assert_eq!(report.len, 900_000);
        assert!(read_all(&resumed) == new, "a mix of two versions");
        let first = &server.requests()[0];
        assert_eq!(
            first.if_range.as_deref(),
            Some("\"v1\""),
            "the resume asked for its version only"
        );
    });
}

#[test]
fn a_redirect_is_followed() {
    let data = content(5, 100_000);
    let runtime = runtime();
    runtime.block_on(async {
        let mut plan = Plan::new(data.clone());
        plan.redirect = true;
        let server = fault_server(plan).await;
        let resource = MemResource::new(CancellationToken::new());
        let old_url = server.url.replace("/file", "/old");
        let options = FetchOptions {
            read_timeout: Duration::from_secs(5),
            ..FetchOptions::default()
        };
        tokio::time::timeout(
            LIMIT,
            Fetcher::new(options).fetch(resource.clone(), &old_url),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(read_all(&resource) == data);
        assert_eq!(server.requests()[1].path, "/file");
    });
}

/// Dropping the fetch stops it: no byte lands afterwards, the resource
/// stays active, and a second fetch asks only for what is missing.
#[test]
fn a_dropped_fetch_stops_and_a_second_one_fetches_only_the_rest() {
    let data = content(6, 2_000_000);
    let runtime = runtime();
    runtime.block_on(async {
        let mut plan = Plan::new(data.clone());
        plan.rate = Some(1_000_000);
        let server = fault_server(plan).await;
        let resource = MemResource::new(CancellationToken::new());
        let fetch = tokio::spawn({
            let (resource, url) = (resource.clone(), server.url.clone());
            async move {
                Fetcher::new(FetchOptions::default())
                    .fetch(resource, &url)
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        fetch.abort();
        let _ = fetch.await;
        let present = |resource: &MemResource| {
            let (mut from, mut held) = (0, 0);
            while let Some(gap) = resource.next_gap(from, 2_000_000) {
                held += gap.start - from;
                from = gap.end;
            }
            held + (2_000_000 - from)
        };
        let stopped_at = present(&resource);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            present(&resource),
            stopped_at,
            "bytes landed after the drop"
        );
        assert!(stopped_at > 0 && stopped_at < 2_000_000, "{stopped_at}");
        assert_eq!(resource.status(), ResourceStatus::Active);
        let report = tokio::time::timeout(
            LIMIT,
            Fetcher::new(FetchOptions::default()).fetch(resource.clone(), &server.url),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(report.fetched, 2_000_000 - stopped_at);
        assert!(read_all(&resource) == data);
    });
}
