//! `ResourceStorageProvider` (feature `stream-download`), driven by
//! stream-download itself: `StreamDownload::from_stream` with an in-memory
//! source stream, its reader on one thread and its download task on the
//! runtime, with seeks; the bytes equal the source, the resource is
//! committed once covered, another reader reads it meanwhile, a second run
//! reads the committed file without a download, and the writer's edge
//! cases (empty writes, lengths that disagree) answer as documented.

use std::{
    convert::Infallible,
    future::{Future, ready},
    io::{self, Read, Seek, SeekFrom, Write},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use storage::{
    CancellationToken, MemResource, MmapOptions, MmapResource, ResourceCursor, ResourceExt,
    ResourceStatus, ResourceStorageProvider,
};
use storage_core::testing::{LIMIT, pattern, within};
use stream_download::{Settings, StreamDownload, source::SourceStream, storage::StorageProvider};

/// A source stream over bytes in memory, in small chunks, that can seek.
struct MemoryStream {
    data: Arc<Vec<u8>>,
    content_length: Option<u64>,
    position: usize,
    end: usize,
}

impl MemoryStream {
    fn new(data: &Arc<Vec<u8>>, content_length: Option<u64>) -> Self {
        Self {
            data: Arc::clone(data),
            content_length,
            position: 0,
            end: data.len(),
        }
    }
}

impl futures_core::Stream for MemoryStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.position >= self.end {
            return Poll::Ready(None);
        }
        let end = (self.position + 3000).min(self.end);
        let chunk = Bytes::copy_from_slice(&self.data[self.position..end]);
        self.position = end;
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl SourceStream for MemoryStream {
    type Params = (Arc<Vec<u8>>, Option<u64>);
    type StreamCreationError = Infallible;

    fn create(params: Self::Params) -> impl Future<Output = Result<Self, Infallible>> + Send {
        ready(Ok(Self::new(&params.0, params.1)))
    }

    fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    fn seek_range(
        &mut self,
        start: u64,
        end: Option<u64>,
    ) -> impl Future<Output = io::Result<()>> + Send {
        self.position = usize::try_from(start).unwrap();
        self.end = end.map_or(self.data.len(), |end| usize::try_from(end).unwrap());
        ready(Ok(()))
    }

    fn reconnect(&mut self, current_position: u64) -> impl Future<Output = io::Result<()>> + Send {
        self.position = usize::try_from(current_position).unwrap();
        ready(Ok(()))
    }

    fn supports_seek(&self) -> bool {
        true
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(path: &std::path::Path) -> MmapResource {
    MmapResource::open(CancellationToken::new(), MmapOptions::new(path)).unwrap()
}

type Download = StreamDownload<ResourceStorageProvider<MmapResource>>;

fn start(
    runtime: &tokio::runtime::Runtime,
    resource: &MmapResource,
    data: &Arc<Vec<u8>>,
    content_length: Option<u64>,
) -> Download {
    let provider = ResourceStorageProvider::new(resource.clone());
    runtime
        .block_on(StreamDownload::from_stream(
            MemoryStream::new(data, content_length),
            provider,
            Settings::default(),
        ))
        .unwrap()
}

fn wait_for_completion(runtime: &tokio::runtime::Runtime, download: &Download) {
    let handle = download.handle();
    runtime
        .block_on(async { tokio::time::timeout(LIMIT, handle.wait_for_completion()).await })
        .expect("the download did not finish");
}

#[test]
fn a_download_read_with_seeks_equals_the_source_and_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = Arc::new(pattern(9, 300_000));
    let runtime = runtime();
    let resource = open(&dir.path().join("track"));
    let mut download = start(&runtime, &resource, &data, Some(data.len() as u64));
    // Another reader of the same resource, blocking, meanwhile.
    let beside = {
        let resource = resource.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            ResourceCursor::new(resource)
                .read_to_end(&mut all)
                .map(|_| all)
        })
    };
    let (head, tail, again, download) = within("reading the download", move || {
        let mut head = vec![0; 100_000];
        download.read_exact(&mut head).unwrap();
        download.seek(SeekFrom::Start(250_000)).unwrap();
        let mut tail = Vec::new();
        download.read_to_end(&mut tail).unwrap();
        download.seek(SeekFrom::Start(10_000)).unwrap();
        let mut again = vec![0; 5_000];
        download.read_exact(&mut again).unwrap();
        (head, tail, again, download)
    });
    assert!(head == data[..100_000], "head differs");
    assert!(tail == data[250_000..], "tail differs");
    assert!(again == data[10_000..15_000], "re-read differs");
    wait_for_completion(&runtime, &download);
    assert_eq!(
        resource.status(),
        ResourceStatus::Committed {
            final_len: Some(300_000)
        }
    );
    let beside = within("the other reader", move || beside.join().unwrap()).unwrap();
    assert!(beside == *data, "the other reader's copy differs");
}

#[test]
fn a_second_run_over_the_committed_file_reads_it_without_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track");
    let data = Arc::new(pattern(4, 120_000));
    let runtime = runtime();
    {
        let resource = open(&path);
        let download = start(&runtime, &resource, &data, Some(data.len() as u64));
        wait_for_completion(&runtime, &download);
        resource.sync().unwrap();
    }
    let resource = open(&path);
    let provider = ResourceStorageProvider::new(resource.clone());
    let mut reader = provider.committed_reader().expect("committed on reopen");
    let mut all = Vec::new();
    reader.read_to_end(&mut all).unwrap();
    assert!(all == *data);

    // Downloading anyway: the same bytes are checked and not stored...
    let mut again = start(&runtime, &resource, &data, Some(data.len() as u64));
    let copy = within("a download over a committed file", move || {
        let mut copy = Vec::new();
        again.read_to_end(&mut copy).map(|_| copy)
    });
    assert!(copy.unwrap() == *data);
    // ...and different bytes fail the download instead of serving either.
    let mut changed = (*data).clone();
    changed[60_000] ^= 0xff;
    let mut different = start(&runtime, &resource, &Arc::new(changed), Some(120_000));
    let result = within("a download that differs", move || {
        let mut copy = Vec::new();
        different.read_to_end(&mut copy)
    });
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn with_an_unknown_length_the_reader_ends_and_the_resource_waits_for_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = Arc::new(pattern(2, 50_000));
    let runtime = runtime();
    let resource = open(&dir.path().join("live"));
    let mut download = start(&runtime, &resource, &data, None);
    let (copy, download) = within("an unknown length", move || {
        let mut copy = Vec::new();
        download.read_to_end(&mut copy).unwrap();
        (copy, download)
    });
    assert!(copy == *data);
    wait_for_completion(&runtime, &download);
    assert_eq!(resource.status(), ResourceStatus::Active);
    resource.commit(None).unwrap();
    assert_eq!(
        resource.status(),
        ResourceStatus::Committed { final_len: None }
    );
}

#[test]
fn the_writer_and_reader_answer_stream_download_s_edge_cases() {
    let resource = MemResource::new(CancellationToken::new());
    let provider = ResourceStorageProvider::new(resource.clone());
    let (mut reader, mut writer) = provider.clone().into_reader_writer(Some(8)).unwrap();
    // The empty write that ends each batch, active and committed.
    assert_eq!(writer.write(&[]).unwrap(), 0);
    // Nothing there yet: the reader does not wait.
    assert_eq!(reader.read(&mut [0; 4]).unwrap(), 0);
    writer.seek(SeekFrom::Start(4)).unwrap();
    writer.write_all(b"4567").unwrap();
    assert_eq!(writer.stream_position().unwrap(), 8);
    assert_eq!(
        reader.read(&mut [0; 4]).unwrap(),
        0,
        "a hole reads as nothing"
    );
    // Past the content length: refused.
    let error = writer.write(b"8").unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    writer.seek(SeekFrom::Start(0)).unwrap();
    writer.write_all(b"0123").unwrap();
    assert_eq!(resource.len(), Some(8), "covered, so committed");
    assert_eq!(writer.write(&[]).unwrap(), 0);
    let mut all = Vec::new();
    reader.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"01234567");
    assert_eq!(reader.seek(SeekFrom::End(-2)).unwrap(), 6);
    assert_eq!(
        reader.seek(SeekFrom::Start(9)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    // A resource that has another length: the provider refuses at once.
    let error = provider.into_reader_writer(Some(9)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    let other = ResourceStorageProvider::new(MemResource::new(CancellationToken::new()));
    other.resource().write_at(0, &[0; 10]).unwrap();
    let error = other.into_reader_writer(Some(9)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    // Nothing to download: committed at once, so other readers end too.
    let empty = ResourceStorageProvider::new(MemResource::new(CancellationToken::new()));
    let resource = empty.resource().clone();
    let (mut reader, _writer) = empty.into_reader_writer(Some(0)).unwrap();
    assert_eq!(resource.len(), Some(0));
    assert_eq!(reader.read(&mut [0; 4]).unwrap(), 0);
}

/// A resumed download whose earlier run left bytes at the tail (a seek to
/// the end), then a second run against a source that changed since: the
/// commit waits until this run rewrote everything, so no byte of the
/// earlier version is committed.
#[test]
fn a_second_run_over_a_changed_source_never_commits_an_earlier_run_s_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track");
    let old = pattern(5, 20_000);
    {
        let resource = open(&path);
        resource.write_at(12_000, &old[12_000..]).unwrap();
        resource.sync().unwrap();
    }
    let new = Arc::new(pattern(6, 20_000));
    let runtime = runtime();
    let resource = open(&path);
    assert_eq!(resource.status(), ResourceStatus::Active, "resumed");
    let mut download = start(&runtime, &resource, &new, Some(20_000));
    let copy = within("the second run", move || {
        let mut copy = Vec::new();
        download.read_to_end(&mut copy).map(|_| (copy, download))
    });
    let (copy, download) = copy.unwrap();
    assert!(copy == *new, "the reader served another version");
    wait_for_completion(&runtime, &download);
    assert_eq!(
        resource.status(),
        ResourceStatus::Committed {
            final_len: Some(20_000)
        }
    );
    let mut all = Vec::new();
    resource.read_into(&mut all).unwrap();
    assert!(all == *new, "an earlier run's bytes were committed");
}

/// The reader serves what this run wrote or checked, never more: a shorter
/// source (no declared length) over a committed file reads as itself, and
/// a run that stops early over a resumed file reads only its own bytes.
#[test]
fn the_reader_serves_only_what_this_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let old = pattern(7, 20_000);

    let committed = open(&dir.path().join("committed"));
    committed.write_all(&old).unwrap();
    let shorter = Arc::new(old[..10_000].to_vec());
    let mut download = start(&runtime, &committed, &shorter, None);
    let copy = within("a shorter source", move || {
        let mut copy = Vec::new();
        download.read_to_end(&mut copy).map(|_| copy)
    });
    assert_eq!(
        copy.unwrap().len(),
        10_000,
        "the committed file's tail was served"
    );

    let partial = open(&dir.path().join("partial"));
    partial.write_at(0, &old[..12_000]).unwrap();
    // This run's source ends after 5,000 bytes (a stream cut short).
    let cut = Arc::new(pattern(8, 5_000));
    let mut download = start(&runtime, &partial, &cut, None);
    let copy = within("a short run over a resumed file", move || {
        let mut copy = Vec::new();
        download.read_to_end(&mut copy).map(|_| copy)
    });
    assert!(
        copy.unwrap() == *cut,
        "bytes of the earlier run were served"
    );
}

/// A stream longer than it said: the write past its length is refused
/// with a message that says so.
#[test]
fn a_stream_longer_than_declared_is_refused_saying_so() {
    let resource = MemResource::new(CancellationToken::new());
    let (_reader, mut writer) = ResourceStorageProvider::new(resource.clone())
        .into_reader_writer(Some(4))
        .unwrap();
    writer.write_all(b"0123").unwrap();
    let error = writer.write(b"4").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("longer than its declared length 4"),
        "{error}"
    );
    assert_eq!(resource.len(), Some(4));
}
