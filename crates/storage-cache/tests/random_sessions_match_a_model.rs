//! Random sequences of open / write / commit / drop / pin / unpin / remove /
//! reopen against a plain model under a small budget: after every step the
//! cache's bytes are its files' bytes, the budget holds but for leased and
//! pinned entries, no leased or pinned entry is gone, and every byte read
//! is a byte written.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test sizes are a few KiB: they fit in usize everywhere"
)]

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use storage_cache::{Cache, CacheOptions, CachedResource};
use storage_core::{CancellationToken, ResourceExt, ResourceStatus};
use support::{content, data_bytes, read_all};

const KEYS: [&str; 4] = ["k0", "../k1", "", "k3/\0"];
const MAX_BYTES: u64 = 12 * 1024;
const INITIAL_LEN: u64 = 2048;

#[derive(Clone, Debug)]
enum Op {
    Open(usize),
    Write {
        key: usize,
        offset: u16,
        len: u16,
        seed: u8,
    },
    Commit(usize),
    Drop(usize),
    Pin(usize),
    Unpin(usize),
    Remove(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        3 => key.clone().prop_map(Op::Open),
        4 => (key.clone(), 0..6000_u16, 1..3000_u16, any::<u8>())
            .prop_map(|(key, offset, len, seed)| Op::Write { key, offset, len, seed }),
        2 => key.clone().prop_map(Op::Commit),
        2 => key.clone().prop_map(Op::Drop),
        1 => key.clone().prop_map(Op::Pin),
        1 => key.clone().prop_map(Op::Unpin),
        1 => key.prop_map(Op::Remove),
        1 => Just(Op::Reopen),
    ]
}

/// What one key should hold.
#[derive(Clone, Debug, Default)]
struct Model {
    /// Bytes, zeros where nothing was written.
    data: Vec<u8>,
    /// Which bytes were written (all, once committed).
    written: Vec<bool>,
    committed: bool,
    pinned: bool,
}

impl Model {
    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
            self.written.resize(end, false);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.written[offset..end].fill(true);
    }
}

struct Session {
    dir: tempfile::TempDir,
    cache: Option<Cache>,
    handles: HashMap<usize, CachedResource>,
    models: HashMap<usize, Model>,
}

impl Session {
    fn cache(&self) -> &Cache {
        self.cache.as_ref().unwrap()
    }

    fn open_cache(&mut self) {
        self.cache = Some(support::open_with(
            self.dir.path(),
            &CacheOptions {
                max_bytes: MAX_BYTES,
                initial_len: Some(INITIAL_LEN),
                ..CacheOptions::default()
            },
        ));
    }

    /// Checks what `handle` shows against the model of `key`.
    fn check_handle(&self, key: usize, handle: &CachedResource) {
        let model = &self.models[&key];
        if model.committed {
            assert_eq!(
                handle.status(),
                ResourceStatus::Committed {
                    final_len: Some(model.data.len() as u64)
                }
            );
        } else {
            assert_eq!(handle.status(), ResourceStatus::Active);
        }
        assert_eq!(read_all(handle), model.data, "bytes of {:?}", KEYS[key]);
        // Exactly the written bytes are available: none invented, none lost.
        for (i, &written) in model.written.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                handle.contains_range(i..i + 1),
                written,
                "byte {i} of {:?}",
                KEYS[key]
            );
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Open(key) => {
                let handle = self
                    .cache()
                    .resource(KEYS[key], CancellationToken::new())
                    .unwrap();
                self.models.entry(key).or_default();
                self.check_handle(key, &handle);
                // A second open shares the same resource.
                self.handles.entry(key).or_insert(handle);
            }
            Op::Write {
                key,
                offset,
                len,
                seed,
            } => {
                if let Some(handle) = self.handles.get(&key)
                    && !self.models[&key].committed
                {
                    let bytes = content(u64::from(seed), usize::from(len));
                    handle.write_at(u64::from(offset), &bytes).unwrap();
                    self.models
                        .get_mut(&key)
                        .unwrap()
                        .write(usize::from(offset), &bytes);
                }
            }
            Op::Commit(key) => {
                if let Some(handle) = self.handles.get(&key)
                    && !self.models[&key].committed
                {
                    let model = self.models.get_mut(&key).unwrap();
                    handle.commit(Some(model.data.len() as u64)).unwrap();
                    model.committed = true;
                    model.written.fill(true);
                }
            }
            Op::Drop(key) => {
                self.handles.remove(&key);
            }
            Op::Pin(key) => {
                if self.cache().contains(KEYS[key]) {
                    self.cache().pin(KEYS[key]).unwrap();
                    self.models.get_mut(&key).unwrap().pinned = true;
                } else {
                    assert!(self.cache().pin(KEYS[key]).is_err());
                }
            }
            Op::Unpin(key) => {
                self.cache().unpin(KEYS[key]).unwrap();
                if let Some(model) = self.models.get_mut(&key) {
                    model.pinned = false;
                }
            }
            Op::Remove(key) => {
                self.cache().remove(KEYS[key]).unwrap();
                self.models.remove(&key);
                // A handle still out keeps its bytes, detached from the key.
                if let Some(handle) = self.handles.remove(&key) {
                    assert!(!self.cache().contains(KEYS[key]));
                    drop(handle);
                }
            }
            Op::Reopen => {
                self.handles.clear();
                self.cache = None;
                self.open_cache();
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let cache = self.cache.as_ref().unwrap();
        // Entries the cache evicted must have been neither leased nor pinned.
        for (key, name) in KEYS.iter().enumerate() {
            let present = cache.contains(name);
            match self.models.get(&key) {
                Some(model) if !present => {
                    assert!(!model.pinned, "pinned {name:?} was evicted");
                    assert!(
                        !self.handles.contains_key(&key),
                        "leased {name:?} was evicted"
                    );
                    self.models.remove(&key);
                }
                None => assert!(!present, "{name:?} is in the cache, not in the model"),
                Some(_) => {}
            }
        }
        for (&key, handle) in &self.handles {
            self.check_handle(key, handle);
        }
        let stats = cache.stats();
        assert_eq!(
            stats.bytes,
            data_bytes(self.dir.path()),
            "the books match the files"
        );
        assert_eq!(stats.entries as usize, self.models.len());
        let evictable: u64 = cache
            .entries()
            .iter()
            .filter(|e| !e.leased && !e.pinned)
            .map(|e| e.bytes)
            .sum();
        assert!(
            stats.bytes <= MAX_BYTES || evictable == 0,
            "over budget ({} > {MAX_BYTES}) with {evictable} evictable bytes",
            stats.bytes
        );
        for entry in cache.entries() {
            let key = KEYS.iter().position(|k| *k == entry.key).unwrap();
            assert_eq!(
                entry.pinned, self.models[&key].pinned,
                "pin of {:?}",
                entry.key
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut session = Session {
            dir: tempfile::tempdir().unwrap(),
            cache: None,
            handles: HashMap::new(),
            models: HashMap::new(),
        };
        session.open_cache();
        for op in &ops {
            session.step(op);
        }
        // Reopened at the end: committed entries are whole, partial ones resume.
        session.step(&Op::Reopen);
        for key in 0..KEYS.len() {
            if session.models.contains_key(&key) {
                session.step(&Op::Open(key));
            }
        }
    }
}
