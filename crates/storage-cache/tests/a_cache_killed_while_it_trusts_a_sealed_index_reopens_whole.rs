//! A child process opens a cache whose index the last clean close sealed,
//! reads, pins, unpins, removes, rewrites and evicts entries it has not
//! checked yet (their markers unread), closes it (sealing again) and opens
//! it again, for ever; it is killed (SIGKILL) at random instants — while
//! it opens and breaks the seal, while it works on unchecked entries,
//! while it writes the index and the seal. The reopened cache keeps every
//! pin that returned, serves no wrong byte, counts the bytes it holds and
//! leaves no orphan.

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
    thread,
    time::Duration,
};

use storage_cache::{Cache, CacheOptions};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
use storage_mmap::fs::journal_owner;
use support::{content, data_bytes, files};

const CHILD_ENV: &str = "STORAGE_CACHE_SEALED_KILL_CHILD";
const KEYS: u64 = 16;
const ROUNDS: u64 = 16;

fn options() -> CacheOptions {
    CacheOptions {
        max_bytes: 60 * 1024,
        initial_len: Some(4096),
        ..CacheOptions::default()
    }
}

fn key(i: u64) -> String {
    format!("https://cdn.example/sealed/{i}.flac")
}

/// The two lengths an entry may be committed at (a rewrite swaps them).
fn lens(i: u64) -> [u64; 2] {
    [2000 + i * 700, 5000 + i * 300]
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn reopen(dir: &Path) -> Cache {
    storage_core::testing::retry_locked(|| Cache::open(dir, options())).unwrap()
}

/// The child: cycles of open, a few operations on random entries, close.
/// Logs `P i` / `U i` / `R i` once a pin / unpin / remove returned, `O`
/// before an operation and `D` after it.
#[test]
fn child_cycling_a_sealed_cache() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, seed) = arg.rsplit_once('|').unwrap();
    let dir = Path::new(dir);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .unwrap();
    let mut rng = Rng(seed.parse::<u64>().unwrap() | 1);
    println!("ready");
    loop {
        let cache = reopen(dir);
        for _ in 0..4 {
            let i = rng.next(KEYS);
            writeln!(log, "O {i}").unwrap();
            match rng.next(6) {
                0 if cache.contains(&key(i)) => {
                    cache.pin(&key(i)).unwrap();
                    writeln!(log, "P {i}").unwrap();
                }
                1 => {
                    cache.unpin(&key(i)).unwrap();
                    writeln!(log, "U {i}").unwrap();
                }
                2 => {
                    cache.remove(&key(i)).unwrap();
                    writeln!(log, "R {i}").unwrap();
                }
                op => {
                    let resource = cache.resource(&key(i), CancellationToken::new()).unwrap();
                    let len = lens(i)[usize::from(op == 3)];
                    if let ResourceStatus::Committed { final_len } = resource.status() {
                        let mut buf = Vec::new();
                        resource.read_into(&mut buf).unwrap();
                        let whole = final_len.unwrap_or(0) as usize;
                        if buf != content(i, whole) {
                            writeln!(log, "MISMATCH {i}").unwrap();
                        }
                        if op == 3 {
                            resource
                                .replace_all(&content(i, len as usize), false)
                                .unwrap();
                        }
                    } else {
                        let data = content(i, len as usize);
                        let half = (len / 2) as usize;
                        resource.write_at(0, &data[..half]).unwrap();
                        if rng.next(2) == 0 {
                            resource.write_at(half as u64, &data[half..]).unwrap();
                            resource.commit(Some(len)).unwrap();
                        }
                    }
                }
            }
            writeln!(log, "D").unwrap();
        }
        drop(cache);
    }
}

/// What the log says: each key's pin as its last returned pin, unpin or
/// removal left it, and the keys whose last operation a kill cut short
/// (it may or may not have happened: their pin is unknown until an
/// operation on them returns again).
fn read_log(path: &Path) -> (BTreeMap<u64, bool>, BTreeSet<u64>) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let (mut pinned, mut unknown) = (BTreeMap::new(), BTreeSet::new());
    let mut pending = None;
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (tag, arg) = (
            parts.next().unwrap_or(""),
            parts.next().and_then(|a| a.parse::<u64>().ok()),
        );
        match (tag, arg) {
            ("O", Some(i)) => {
                // The one before never said `D`: killed in it.
                unknown.extend(pending.replace(i));
            }
            ("D", _) => pending = None,
            ("P", Some(i)) => {
                pinned.insert(i, true);
                unknown.remove(&i);
            }
            ("U" | "R", Some(i)) => {
                pinned.insert(i, false);
                unknown.remove(&i);
            }
            ("MISMATCH", _) => panic!("the child read a wrong byte: {line}"),
            // A torn line: the kill came while it was written.
            ("O" | "P" | "U" | "R", None) => unknown.extend(pending),
            _ => {}
        }
    }
    unknown.extend(pending);
    (pinned, unknown)
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
fn a_cache_killed_while_it_trusts_a_sealed_index_reopens_whole() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let log = dir.with_extension("log");
    // A sealed start: every entry committed, none checked by the child.
    let cache = Cache::open(&dir, options()).unwrap();
    for i in 0..KEYS / 2 {
        let len = lens(i)[0];
        support::get(&cache, &key(i))
            .write_all(&content(i, len as usize))
            .unwrap();
    }
    drop(cache);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sealed_reopens = 0;
    for round in 0..ROUNDS {
        let mut child = storage_core::testing::spawn_ready_child(
            "child_cycling_a_sealed_cache",
            CHILD_ENV,
            &format!("{}|{}", dir.display(), round + 1),
        );
        thread::sleep(Duration::from_millis(5 + rng.next(400)));
        child.kill().unwrap();
        child.wait().unwrap();

        let (pinned, unknown) = read_log(&log);
        sealed_reopens += u32::from(support::sealed(&dir));
        let cache = reopen(&dir);
        assert_no_orphans(&dir);
        assert_eq!(
            cache.stats().bytes,
            data_bytes(&dir),
            "round {round}: bytes it does not hold"
        );
        let entries: BTreeMap<String, bool> = cache
            .entries()
            .into_iter()
            .map(|e| (e.key, e.pinned))
            .collect();
        // The last pin or unpin that returned holds, unless a kill cut
        // short a later operation on that key.
        for (&i, &pin) in &pinned {
            let now = entries.get(&key(i)).copied().unwrap_or(false);
            assert!(
                now == pin || unknown.contains(&i),
                "round {round}: key {i} pinned {now}, the log says {pin}"
            );
        }
        let listed: Vec<String> = entries.keys().cloned().collect();
        for k in listed {
            let i: u64 = k
                .trim_start_matches("https://cdn.example/sealed/")
                .trim_end_matches(".flac")
                .parse()
                .unwrap();
            let resource = cache.resource(&k, CancellationToken::new()).unwrap();
            let mut buf = Vec::new();
            resource.read_into(&mut buf).unwrap();
            match resource.status() {
                ResourceStatus::Committed { final_len } => {
                    assert!(
                        lens(i).contains(&final_len.unwrap()),
                        "round {round}: key {i} committed at {final_len:?}"
                    );
                    assert_eq!(buf, content(i, buf.len()), "round {round}: key {i}");
                }
                status => {
                    assert_eq!(status, ResourceStatus::Active, "round {round}: key {i}");
                    let len = buf.len() as u64;
                    if resource.contains_range(0..len.min(1000)) {
                        let end = len.min(1000) as usize;
                        let whole = content(i, lens(i)[1] as usize);
                        let short = content(i, lens(i)[0] as usize);
                        assert!(
                            buf[..end] == whole[..end] || buf[..end] == short[..end],
                            "round {round}: key {i} serves wrong bytes"
                        );
                    }
                }
            }
        }
        let stats = cache.stats();
        assert!(
            stats.bytes <= options().max_bytes || stats.overshoot > 0,
            "{stats:?}"
        );
        drop(cache);
        assert!(support::sealed(&dir), "the parent's close seals");
    }
    // The parent's closes seal: the child opens sealed at least each round.
    println!("{sealed_reopens} of {ROUNDS} kills left a seal");
}

/// Opens with a budget nothing here exceeds.
fn open_big(dir: &Path) -> Cache {
    storage_core::testing::retry_locked(|| {
        Cache::open(
            dir,
            CacheOptions {
                max_bytes: 1 << 30,
                ..options()
            },
        )
    })
    .unwrap()
}

/// The child: opens a sealed cache, grows a partial entry in place (no
/// name changes), says "ready" and waits to be killed.
#[test]
fn child_growing_an_entry_in_place() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cache = open_big(Path::new(&dir));
    let partial = cache.resource("p", CancellationToken::new()).unwrap();
    partial.write_at(0, &content(7, 200_000)).unwrap();
    partial.sync().unwrap();
    println!("ready");
    thread::sleep(support::LIMIT);
}

#[test]
fn a_kill_after_changes_in_place_leaves_no_seal_to_trust() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let cache = open_big(&dir);
    let partial = support::get(&cache, "p");
    partial.write_at(0, &content(7, 1000)).unwrap();
    drop((partial, cache));
    assert!(support::sealed(&dir));
    let names_before = files(&dir);
    let mut child = storage_core::testing::spawn_ready_child(
        "child_growing_an_entry_in_place",
        CHILD_ENV,
        dir.to_str().unwrap(),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(files(&dir), names_before, "no name changed");
    assert!(!support::sealed(&dir), "the seal was broken at open");
    let cache = open_big(&dir);
    assert_eq!(cache.stats().bytes, data_bytes(&dir));
    assert!(cache.stats().bytes >= 200_000);
    let partial = support::get(&cache, "p");
    assert!(partial.contains_range(0..200_000));
}
