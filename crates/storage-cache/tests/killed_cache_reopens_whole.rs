//! A cache killed (SIGKILL) at random instants while it downloads, commits,
//! pins and evicts: the reopened cache loses no committed entry that was not
//! evicted, serves no byte that was not written, counts only bytes it holds,
//! and leaves no orphan file. Also: a second process cannot open a directory
//! that a live process owns, and can once that one is dead.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test sizes are a few KiB: they fit in usize everywhere"
)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    path::Path,
    process::Child,
    thread,
    time::{Duration, Instant},
};

use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus, StorageError};
use storage_mmap::fs::journal_owner;
use support::{LIMIT, content, data_bytes, files};

const CHILD_ENV: &str = "STORAGE_CACHE_KILL_CHILD";
const KEYS: u64 = 24;
const CHUNK: u64 = 1000;
const ROUNDS: u64 = 24;

fn options() -> CacheOptions {
    CacheOptions {
        max_bytes: 160 * 1024,
        initial_len: Some(4096),
        ..CacheOptions::default()
    }
}

fn key(i: u64) -> String {
    format!("https://cdn.example/{i}.flac")
}

fn len_of(i: u64) -> u64 {
    3000 + i * 1500
}

/// A small xorshift generator: no dependency, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Starts this test binary again as a child that runs only `test` with
/// `CHILD_ENV=value`, and waits for it to print "ready".
fn spawn_ready_child(test: &str, value: &str) -> Child {
    storage_core::testing::spawn_ready_child(test, CHILD_ENV, value)
}

/// Opens the cache, retrying while `Locked` (for at most [`LIMIT`]): a child
/// that another test forks in the instant after a handle closes keeps its
/// lock until it execs.
fn reopen(dir: &Path) -> Cache {
    storage_core::testing::retry_locked(|| Cache::open(dir, options())).unwrap()
}

/// The child: downloads, commits, pins and re-reads entries for ever,
/// logging each fact once it holds (`C i` committed, `P i` pinned, `E i`
/// found evicted; `O` before an operation, `D` after it).
#[test]
fn child_downloading_into_the_cache() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, seed) = arg.rsplit_once('|').unwrap();
    let dir = Path::new(dir);
    let cache = Cache::open(dir, options()).unwrap();
    let mut log = fs::File::create(dir.with_extension("log")).unwrap();
    let mut rng = Rng(seed.parse::<u64>().unwrap() | 1);
    let mut committed = BTreeSet::new();
    println!("ready");
    loop {
        let i = rng.next(KEYS);
        let (len, data) = (len_of(i), content(i, len_of(i) as usize));
        writeln!(log, "O").unwrap();
        let resource = cache.resource(&key(i), CancellationToken::new()).unwrap();
        if matches!(resource.status(), ResourceStatus::Committed { .. }) {
            let mut buf = Vec::new();
            resource.read_into(&mut buf).unwrap();
            if buf != data {
                writeln!(log, "MISMATCH {i}").unwrap();
            }
        } else {
            let chunks = len.div_ceil(CHUNK);
            let first = rng.next(chunks);
            let whole = rng.next(3) != 0;
            for c in (0..chunks).map(|c| (c + first) % chunks) {
                if !whole && rng.next(4) == 0 {
                    break;
                }
                let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(len));
                resource
                    .write_at(start, &data[start as usize..end as usize])
                    .unwrap();
            }
            if whole {
                resource.commit(Some(len)).unwrap();
                writeln!(log, "C {i}").unwrap();
                committed.insert(i);
                if i.is_multiple_of(5) {
                    cache.pin(&key(i)).unwrap();
                    writeln!(log, "P {i}").unwrap();
                }
            }
        }
        drop(resource);
        let gone: Vec<u64> = committed
            .iter()
            .copied()
            .filter(|&c| !cache.contains(&key(c)))
            .collect();
        for c in gone {
            committed.remove(&c);
            writeln!(log, "E {c}").unwrap();
        }
        writeln!(log, "D").unwrap();
    }
}

/// What the log says: committed keys not seen evicted, pinned keys, and
/// whether an operation was cut short by the kill.
fn read_log(path: &Path) -> (BTreeSet<u64>, BTreeSet<u64>, bool) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let (mut committed, mut pinned, mut in_flight) = (BTreeSet::new(), BTreeSet::new(), false);
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (tag, arg) = (
            parts.next().unwrap_or(""),
            parts.next().and_then(|a| a.parse::<u64>().ok()),
        );
        match (tag, arg) {
            ("O", _) => in_flight = true,
            ("D", _) => in_flight = false,
            ("C", Some(i)) => {
                committed.insert(i);
            }
            ("P", Some(i)) => {
                pinned.insert(i);
            }
            ("E", Some(i)) => {
                committed.remove(&i);
            }
            ("MISMATCH", _) => panic!("the child read a wrong byte: {line}"),
            _ => {}
        }
    }
    // A torn last line is an operation in flight.
    (committed, pinned, in_flight || !text.ends_with('\n'))
}

/// Every file of `dir` belongs to a whole entry (or is the lock or index).
fn assert_no_orphans(dir: &Path) {
    let names: BTreeSet<String> = files(dir).into_iter().collect();
    let entry = |n: &str| {
        n.len() > 17 && n.as_bytes()[16] == b'-' && n[..16].bytes().all(|b| b.is_ascii_hexdigit())
    };
    for name in &names {
        let ok = if name == "cache.lock" || name == "cache.index" {
            true
        } else if let Some(stem) = name.strip_suffix(".key") {
            entry(stem) && names.contains(stem)
        } else if let Some(stem) = journal_owner(Path::new(name))
            .and_then(|owner| owner.into_os_string().into_string().ok())
        {
            entry(&stem) && names.contains(&stem) && names.contains(&format!("{stem}.key"))
        } else {
            entry(name) && !name.contains('.') && names.contains(&format!("{name}.key"))
        };
        assert!(ok, "orphan {name} in {names:?}");
    }
}

#[test]
fn a_cache_killed_at_random_moments_reopens_whole() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let log = dir.with_extension("log");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut pinned_ever = BTreeMap::new();
    for round in 0..ROUNDS {
        let _ = fs::remove_file(&log);
        let mut child = spawn_ready_child(
            "child_downloading_into_the_cache",
            &format!("{}|{}", dir.display(), round + 1),
        );
        thread::sleep(Duration::from_millis(5 + rng.next(120)));
        child.kill().unwrap();
        child.wait().unwrap();

        let (committed, pinned, in_flight) = read_log(&log);
        let cache = reopen(&dir);
        assert_no_orphans(&dir);
        assert_eq!(
            cache.stats().bytes,
            data_bytes(&dir),
            "round {round}: bytes it does not hold"
        );
        for &i in &pinned {
            pinned_ever.insert(i, round);
        }
        // Pinned entries are never evicted, in this round or a later one.
        for (&i, &since) in &pinned_ever {
            assert!(
                cache.contains(&key(i)),
                "round {round}: pinned {i} (since round {since}) is gone"
            );
        }
        for &i in &committed {
            assert!(
                cache.contains(&key(i)) || (in_flight && !pinned.contains(&i)),
                "round {round}: committed {i} was lost"
            );
        }
        // Every entry: whole if committed, and only written bytes otherwise.
        for entry in cache.entries() {
            let i: u64 = entry
                .key
                .trim_start_matches("https://cdn.example/")
                .trim_end_matches(".flac")
                .parse()
                .unwrap();
            let (len, data) = (len_of(i), content(i, len_of(i) as usize));
            let resource = cache
                .resource(&entry.key, CancellationToken::new())
                .unwrap();
            let mut buf = Vec::new();
            resource.read_into(&mut buf).unwrap();
            match resource.status() {
                ResourceStatus::Committed { final_len } => {
                    assert_eq!(final_len, Some(len), "round {round}: key {i}");
                    assert_eq!(buf, data, "round {round}: key {i}");
                }
                status => {
                    assert_eq!(status, ResourceStatus::Active);
                    assert!(
                        !committed.contains(&i) || in_flight,
                        "round {round}: committed {i} reopened partial"
                    );
                    for c in 0..len.div_ceil(CHUNK) {
                        let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(len));
                        if resource.contains_range(start..end) {
                            assert_eq!(
                                &buf[start as usize..end as usize],
                                &data[start as usize..end as usize]
                            );
                        }
                    }
                }
            }
        }
        let stats = cache.stats();
        assert!(
            stats.bytes <= options().max_bytes || stats.overshoot > 0,
            "{stats:?}"
        );
    }
}

#[test]
fn child_holding_the_cache() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _cache = Cache::open(&dir, options()).unwrap();
    println!("ready");
    thread::sleep(LIMIT);
}

#[test]
fn a_second_process_is_refused_until_the_owner_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_ready_child("child_holding_the_cache", dir.path().to_str().unwrap());
    let started = Instant::now();
    let refused = Cache::open(dir.path(), options());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not after a wait"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        matches!(refused, Err(StorageError::Locked { ref path }) if path.ends_with("cache.lock")),
        "{refused:?}"
    );
    reopen(dir.path());
}
