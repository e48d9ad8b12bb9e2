//! A power loss, simulated at every sync the cache and its entries make
//! (the mmap driver's durable image: a file's bytes as of its last sync, a
//! directory's names as of its last sync; what was never synced is lost):
//! an entry whose `sync()` returned reopens — whole if committed, with
//! what it had written if partial — and pinned if its `pin` returned; no
//! entry ever serves a byte that was not written.

#![cfg(target_os = "linux")]
#![allow(
    clippy::cast_possible_truncation,
    reason = "test sizes are a few KiB: they fit in usize everywhere"
)]

mod support;

use std::{
    collections::BTreeMap,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;
use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
use storage_mmap::fs::testing::{DurableImage, record_syncs};
use support::content;

/// What the session promised so far, per key.
#[derive(Clone, Debug, Default)]
struct Promise {
    /// The bytes written to the entry's start that `sync()` made durable.
    synced: Option<Range<u64>>,
    /// Committed at the end of `synced`.
    committed: bool,
    pinned: bool,
}

#[derive(Default)]
struct Books {
    promises: BTreeMap<String, Promise>,
    /// Every key's full content (what any byte served must equal).
    contents: BTreeMap<String, Vec<u8>>,
    points: usize,
    failures: Vec<String>,
}

/// Loses power now: rebuilds the cache directory from `image` and checks
/// every promise and every byte the reopened cache serves.
fn check(image: &DurableImage, crash: &Path, books: &mut Books) {
    image.rebuild(crash);
    books.points += 1;
    let point = books.points;
    let cache = match Cache::open(crash, CacheOptions::default()) {
        Ok(cache) => cache,
        Err(error) => {
            books
                .failures
                .push(format!("point {point}: open failed: {error}"));
            return;
        }
    };
    let pinned: Vec<String> = cache
        .entries()
        .into_iter()
        .filter(|e| e.pinned)
        .map(|e| e.key)
        .collect();
    for (key, data) in &books.contents {
        let promise = books.promises.get(key).cloned().unwrap_or_default();
        if !cache.contains(key) {
            if promise.synced.is_some() {
                books.failures.push(format!("point {point}: {key} lost"));
            }
            continue;
        }
        let entry = cache.resource(key, CancellationToken::new()).unwrap();
        let committed = matches!(entry.status(), ResourceStatus::Committed { .. });
        if promise.committed && !committed {
            books
                .failures
                .push(format!("point {point}: {key} no longer committed"));
        }
        if promise.pinned && !pinned.contains(key) {
            books
                .failures
                .push(format!("point {point}: {key} lost its pin"));
        }
        if let Some(synced) = &promise.synced
            && !entry.contains_range(synced.clone())
        {
            books
                .failures
                .push(format!("point {point}: {key} lost {synced:?}"));
        }
        // Every byte it reports is the byte written.
        let mut from = 0;
        let end = data.len() as u64;
        while from < end {
            let gap = entry.next_gap(from, end).unwrap_or(end..end);
            let mut bytes = vec![0; (gap.start - from) as usize];
            entry.read_at(from, &mut bytes).unwrap();
            if bytes != data[from as usize..gap.start as usize] {
                books.failures.push(format!(
                    "point {point}: {key} serves wrong bytes in {from}..{}",
                    gap.start
                ));
                break;
            }
            from = gap.end;
        }
        if committed && entry.len() != Some(end) {
            books.failures.push(format!(
                "point {point}: {key} committed at {:?}",
                entry.len()
            ));
        }
    }
}

#[test]
fn a_power_loss_at_any_sync_keeps_synced_and_pinned_entries() {
    let session = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    let dir: PathBuf = session.path().join("cache");
    let options = CacheOptions {
        initial_len: Some(16 * 1024),
        ..CacheOptions::default()
    };
    let cache = Cache::open(&dir, options).unwrap();
    let books = Arc::new(Mutex::new(Books::default()));
    let keys = ["a", "b", "c", "d", "e"];
    for (i, key) in keys.iter().enumerate() {
        let len = 20_000 + i * 7_000;
        books
            .lock()
            .contents
            .insert((*key).to_string(), content(i as u64 + 1, len));
    }
    let recording = {
        let (books, crash) = (Arc::clone(&books), crashes.path().join("now"));
        record_syncs(&dir, move |image| check(image, &crash, &mut books.lock()))
    };
    let data = |key: &str| books.lock().contents[key].clone();
    let promise = |key: &str, change: &dyn Fn(&mut Promise)| {
        change(books.lock().promises.entry(key.to_string()).or_default());
    };
    // "a": committed, synced, pinned.
    let entry_a = cache.resource("a", CancellationToken::new()).unwrap();
    entry_a.write_all(&data("a")).unwrap();
    entry_a.sync().unwrap();
    let len_a = data("a").len() as u64;
    promise("a", &|p| {
        p.synced = Some(0..len_a);
        p.committed = true;
    });
    cache.pin("a").unwrap();
    promise("a", &|p| p.pinned = true);
    // "b": committed and synced; "c": half written and synced.
    let entry_b = cache.resource("b", CancellationToken::new()).unwrap();
    entry_b.write_all(&data("b")).unwrap();
    entry_b.sync().unwrap();
    let len_b = data("b").len() as u64;
    promise("b", &|p| {
        p.synced = Some(0..len_b);
        p.committed = true;
    });
    let entry_c = cache.resource("c", CancellationToken::new()).unwrap();
    entry_c.write_at(0, &data("c")[..10_000]).unwrap();
    entry_c.sync().unwrap();
    promise("c", &|p| p.synced = Some(0..10_000));
    // "d": committed, never synced (no promise, but no wrong byte).
    let entry_d = cache.resource("d", CancellationToken::new()).unwrap();
    entry_d.write_all(&data("d")).unwrap();
    // "e": pinned before its data is synced, then synced.
    let entry_e = cache.resource("e", CancellationToken::new()).unwrap();
    entry_e.write_all(&data("e")).unwrap();
    cache.pin("e").unwrap();
    entry_e.sync().unwrap();
    let len_e = data("e").len() as u64;
    promise("e", &|p| {
        p.synced = Some(0..len_e);
        p.committed = true;
        p.pinned = true;
    });
    // Later work makes more sync points: the rest of "c", "d" synced.
    entry_c.write_at(10_000, &data("c")[10_000..]).unwrap();
    entry_c.sync().unwrap();
    drop((entry_a, entry_b, entry_c, entry_d, entry_e));
    drop(recording);
    drop(cache);
    let books = books.lock();
    println!("{} power losses checked", books.points);
    assert!(books.failures.is_empty(), "{:#?}", books.failures);
    assert!(books.points >= 8, "only {} sync points", books.points);
}

/// A power loss at every sync of a clean close (the index, the seal), of
/// the next open (the seal broken) and of work on entries that open took
/// from the sealed index unchecked (a pin, an unpin, a removal, a sync):
/// every promise kept, no wrong byte.
#[test]
fn a_power_loss_around_a_sealed_close_and_reopen_keeps_what_was_promised() {
    let session = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    let dir: PathBuf = session.path().join("cache");
    let options = CacheOptions {
        initial_len: Some(16 * 1024),
        ..CacheOptions::default()
    };
    let books = Arc::new(Mutex::new(Books::default()));
    let keys = ["a", "b", "c", "d"];
    for (i, key) in keys.iter().enumerate() {
        let len = 10_000 + i * 3_000;
        books
            .lock()
            .contents
            .insert((*key).to_string(), content(i as u64 + 11, len));
    }
    let data = |key: &str| books.lock().contents[key].clone();
    let promise = |key: &str, change: &dyn Fn(&mut Promise)| {
        change(books.lock().promises.entry(key.to_string()).or_default());
    };
    let cache = Cache::open(&dir, options.clone()).unwrap();
    let recording = {
        let (books, crash) = (Arc::clone(&books), crashes.path().join("now"));
        record_syncs(&dir, move |image| check(image, &crash, &mut books.lock()))
    };
    // Every entry committed and synced, "a" pinned.
    for key in keys {
        let entry = cache.resource(key, CancellationToken::new()).unwrap();
        entry.write_all(&data(key)).unwrap();
        entry.sync().unwrap();
        let len = data(key).len() as u64;
        promise(key, &|p| {
            p.synced = Some(0..len);
            p.committed = true;
        });
    }
    cache.pin("a").unwrap();
    promise("a", &|p| p.pinned = true);
    drop(cache);
    assert!(
        std::fs::metadata(dir.join("cache.lock")).unwrap().len() > 0,
        "sealed"
    );
    // Reopened sealed: every entry unchecked.
    let cache = Cache::open(&dir, options).unwrap();
    cache.pin("b").unwrap();
    promise("b", &|p| p.pinned = true);
    // What an unpin or a removal under way leaves is no promise either way.
    promise("a", &|p| p.pinned = false);
    cache.unpin("a").unwrap();
    books.lock().promises.remove("c");
    cache.remove("c").unwrap();
    let entry_d = cache.resource("d", CancellationToken::new()).unwrap();
    entry_d.sync().unwrap();
    drop(entry_d);
    drop(cache);
    drop(recording);
    let books = books.lock();
    println!("{} power losses checked", books.points);
    assert!(books.failures.is_empty(), "{:#?}", books.failures);
    assert!(books.points >= 6, "only {} sync points", books.points);
}
