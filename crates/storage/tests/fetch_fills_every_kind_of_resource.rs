//! `storage::fetch` fills every kind of resource the facade offers, from a
//! real server on 127.0.0.1 (tower-http's `ServeDir`): `StorageResource`
//! over either driver, `Atomic`, and an `AtomicChunked` download, which is
//! published whole at its path once the last byte lands.

mod support;

use storage::{
    Atomic, AtomicChunked, CancellationToken, MemResource, MmapOptions, MmapResource, OpenIntent,
    OpenMode, ResourceExt, ResourceStatus, StorageResource,
    fetch::{FetchOptions, Fetcher},
};
use storage_core::testing::LIMIT;

fn read_all(resource: &impl ResourceExt) -> Vec<u8> {
    let mut all = Vec::new();
    resource.read_into(&mut all).unwrap();
    all
}

async fn fetch<R>(resource: &R, url: &str)
where
    R: ResourceExt + Clone + Send + Sync + 'static,
{
    let report = tokio::time::timeout(
        LIMIT,
        Fetcher::new(FetchOptions::default()).fetch(resource.clone(), url),
    )
    .await
    .expect("the fetch did not end")
    .unwrap();
    assert_eq!(report.len, 500_000);
}

#[test]
fn every_kind_of_resource_is_filled_and_committed() {
    let served = tempfile::tempdir().unwrap();
    let data = support::pattern(11, 500_000);
    std::fs::write(served.path().join("track.mp3"), &data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/track.mp3", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback_service(tower_http::services::ServeDir::new(served.path()));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mem = StorageResource::from(MemResource::new(CancellationToken::new()));
        fetch(&mem, &url).await;
        assert!(read_all(&mem) == data);

        let open = |name: &str| {
            MmapResource::open(
                CancellationToken::new(),
                MmapOptions::new(dir.path().join(name)),
            )
            .unwrap()
        };
        let file = StorageResource::from(open("unified"));
        fetch(&file, &url).await;
        assert!(read_all(&file) == data);

        let atomic = Atomic::new(open("atomic"));
        fetch(&atomic, &url).await;
        assert!(read_all(&atomic) == data);

        let canonical = dir.path().join("album").join("01.mp3");
        let cancel = CancellationToken::new();
        let chunked = AtomicChunked::open(canonical.clone(), move |path, intent| {
            let mode = if intent == OpenIntent::Fresh {
                OpenMode::Auto
            } else {
                OpenMode::ReadOnly
            };
            MmapResource::open(
                cancel.clone(),
                MmapOptions {
                    path: path.to_path_buf(),
                    initial_len: None,
                    mode,
                },
            )
        })
        .unwrap();
        fetch(&chunked, &url).await;
        assert_eq!(
            chunked.status(),
            ResourceStatus::Committed {
                final_len: Some(500_000)
            }
        );
        assert!(
            std::fs::read(&canonical).unwrap() == data,
            "not published whole"
        );
    });
}
