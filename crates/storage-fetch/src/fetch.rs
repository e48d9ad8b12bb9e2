//! One download: a loop that keeps up to `connections` range requests in
//! flight — one filling the file in order, others serving what blocked
//! readers ask for — and retries, restarts or commits as their answers say.

use std::{
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot_free::Mutex;
use storage_core::{ResourceExt, ResourceStatus, StorageError};
use tokio::task::{AbortHandle, JoinSet};

use crate::{FetchError, FetchOptions, FetchReport, request::request};

/// A std mutex that shrugs off poisoning (no code panics while holding it).
pub(crate) mod parking_lot_free {
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// How many times a remote file may change under one download before it
/// gives up.
const MAX_RESTARTS: u32 = 3;

/// How often the job looks at the resource's lifecycle (cancelled, failed,
/// committed by someone else) while it waits for answers.
const LIFECYCLE_LOOK: Duration = Duration::from_millis(100);

/// What the job knows of the remote file.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    pub(crate) len: Option<u64>,
    pub(crate) validator: Option<String>,
    /// `Some(false)` once a server answered a range request from 0 (200).
    pub(crate) ranges: Option<bool>,
}

/// What every request of one download shares.
pub(crate) struct Context<R> {
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
    pub(crate) resource: R,
    pub(crate) options: Arc<FetchOptions>,
    pub(crate) identity: Mutex<Identity>,
    /// Bytes stored by this download.
    pub(crate) fetched: AtomicU64,
    /// HTTP requests sent.
    pub(crate) requests: std::sync::atomic::AtomicU32,
}

/// How one request ended.
#[derive(Debug)]
pub(crate) enum Finished {
    /// Its body ended (`eof`), or it reached its limit.
    Done {
        eof: bool,
        end: u64,
        progressed: bool,
    },
    /// The remote file is not the one the resource holds bytes of.
    Changed(String),
    /// 416: nothing from where it asked; the total, if said.
    NotSatisfiable { asked: u64, total: Option<u64> },
    /// Worth another try from `front`: a network error, a stall, a 5xx.
    Failed {
        front: u64,
        progressed: bool,
        reason: String,
        status: Option<u16>,
    },
    /// Refused for good (a 4xx).
    Refused(u16),
    /// A response that contradicts itself.
    Invalid(String),
    /// The resource refused a write.
    Storage(StorageError),
}

/// A request in flight.
struct Worker {
    /// Where its span starts.
    start: u64,
    /// Where its next byte goes.
    front: Arc<AtomicU64>,
    /// Where it stops (lowered when another request takes over past it).
    limit: Arc<AtomicU64>,
    /// Serves a reader's demand (rather than the in-order fill).
    demand: bool,
    /// Failed attempts in a row of this span.
    failures: u32,
    abort: AbortHandle,
    /// Spawned after every earlier worker (the newest demand is kept).
    serial: u64,
    /// When it was spawned (its rate, for its window).
    spawned: std::time::Instant,
}

/// What a new request costs before its first byte (a round trip or two):
/// a reader this far in time ahead of a request's front is better served
/// by a request of its own.
const SEEK_COST: Duration = Duration::from_millis(250);

/// The smallest window: a reader this close to a front always waits for it.
const MIN_WINDOW: u64 = 64 * 1024;

impl Worker {
    /// How far past `front` a blocked reader is still an underrun: what
    /// this request delivers in [`SEEK_COST`] at the rate it has shown, at
    /// least [`MIN_WINDOW`], at most `most` (`FetchOptions::front_window`,
    /// also the window before any rate is known).
    fn window(&self, front: u64, most: u64) -> u64 {
        let elapsed = self.spawned.elapsed();
        let delivered = front.saturating_sub(self.start);
        if delivered == 0 || elapsed < Duration::from_millis(50) {
            return most;
        }
        let window = u128::from(delivered) * SEEK_COST.as_millis() / elapsed.as_millis().max(1);
        u64::try_from(window)
            .unwrap_or(u64::MAX)
            .clamp(MIN_WINDOW.min(most), most)
    }
}

pub(crate) struct Job<R> {
    context: Arc<Context<R>>,
    workers: Vec<(tokio::task::Id, Worker)>,
    tasks: JoinSet<Finished>,
    serial: u64,
    /// Where seeks were being served when their request gave its slot to a
    /// newer one: asked again first when a slot frees.
    pending_demands: Vec<u64>,
    retries: u32,
    restarts: u32,
}

impl<R> Job<R>
where
    R: ResourceExt + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        client: reqwest::Client,
        options: Arc<FetchOptions>,
        resource: R,
        url: &str,
    ) -> Self {
        let identity = Identity {
            len: resource.expected_len(),
            validator: resource.validator(),
            ranges: None,
        };
        Self {
            context: Arc::new(Context {
                client,
                url: url.to_owned(),
                resource,
                options,
                identity: Mutex::new(identity),
                fetched: AtomicU64::new(0),
                requests: std::sync::atomic::AtomicU32::new(0),
            }),
            workers: Vec::new(),
            tasks: JoinSet::new(),
            serial: 0,
            pending_demands: Vec::new(),
            retries: 0,
            restarts: 0,
        }
    }

    fn resource(&self) -> &R {
        &self.context.resource
    }

    fn report(&self) -> FetchReport {
        let len = self.resource().len().unwrap_or(0);
        let fetched = self.context.fetched.load(Ordering::Relaxed);
        FetchReport {
            len,
            fetched,
            skipped: len.saturating_sub(fetched),
            requests: self.context.requests.load(Ordering::Relaxed),
            retries: self.retries,
            restarts: self.restarts,
        }
    }

    pub(crate) async fn run(mut self) -> Result<FetchReport, FetchError> {
        if let ResourceStatus::Committed { .. } = self.resource().status() {
            return Ok(self.report());
        }
        let mut demand = self.resource().demand();
        // A look at the lifecycle between answers: a cancelled or failed
        // resource stops the download within this, even while every
        // connection waits for bytes.
        let mut lifecycle = tokio::time::interval(LIFECYCLE_LOOK);
        loop {
            if self.finish_if_complete()? {
                return Ok(self.report());
            }
            self.fill_slots(0, None);
            if self.workers.is_empty() && self.finish_if_complete()? {
                return Ok(self.report());
            }
            if self.workers.is_empty() {
                return Err(self.give_up_invalid("nothing left to ask, yet the file is not whole"));
            }
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id() => {
                    let (id, finished) = match joined {
                        Ok((id, finished)) => (id, finished),
                        // An aborted worker: its slot is already free.
                        Err(error) if error.is_cancelled() => continue,
                        Err(error) => (error.id(), Finished::Invalid(format!("a request task died: {error}"))),
                    };
                    let worker = self.take_worker(id);
                    self.handle(worker, finished).await?;
                }
                wanted = demand.wanted() => self.serve_demand(&wanted),
                _ = lifecycle.tick() => match self.resource().status() {
                    ResourceStatus::Cancelled => return Err(FetchError::Cancelled),
                    ResourceStatus::Failed(reason) => {
                        return Err(FetchError::Storage(StorageError::Failed(reason)));
                    }
                    ResourceStatus::Committed { .. } => return Ok(self.report()),
                    ResourceStatus::Active => {}
                },
            }
        }
    }

    /// Commits the resource when every byte of a known length is there.
    fn finish_if_complete(&self) -> Result<bool, FetchError> {
        let resource = self.resource();
        if let ResourceStatus::Committed { .. } = resource.status() {
            return Ok(true);
        }
        let Some(len) = self.context.identity.lock().len else {
            return Ok(false);
        };
        if !self.workers.is_empty() || resource.next_gap(0, len).is_some() {
            return Ok(false);
        }
        match resource.commit(Some(len)) {
            Ok(()) => Ok(true),
            Err(StorageError::Cancelled) => Err(FetchError::Cancelled),
            Err(error) => Err(FetchError::Storage(error)),
        }
    }

    /// The most requests in flight now: one until the file's length and
    /// range support are known.
    fn slots(&self) -> usize {
        let identity = self.context.identity.lock();
        if identity.len.is_none() || identity.ranges == Some(false) {
            1
        } else {
            self.context.options.connections.max(1)
        }
    }

    /// The first span from `from` that is missing and that no request in
    /// flight is about to fill: `start..end` (`end` `None`: to the end of a
    /// file of unknown length).
    fn next_span(&self, from: u64) -> Option<(u64, Option<u64>)> {
        let len = self.context.identity.lock().len;
        let upper = len.unwrap_or(u64::MAX);
        let mut at = from;
        while let Some(gap) = self.resource().next_gap(at, upper) {
            let mut start = gap.start;
            // Past the regions requests in flight will fill.
            while let Some(limit) = self.workers.iter().find_map(|(_, w)| {
                let (front, limit) = (
                    w.front.load(Ordering::Acquire),
                    w.limit.load(Ordering::Acquire),
                );
                (front <= start && start < limit).then_some(limit)
            }) {
                start = limit;
            }
            if start < gap.end {
                let end = (gap.end != u64::MAX).then_some(gap.end);
                return Some((start, end));
            }
            at = gap.end;
            if at >= upper {
                break;
            }
        }
        None
    }

    /// Starts requests for missing spans while slots are free.
    fn fill_slots(&mut self, failures: u32, wait: Option<Duration>) {
        while self.workers.len() < self.slots() {
            // A seek that gave its slot away first, if it still wants bytes.
            let (span, demand) = match self.pending_demands.pop() {
                Some(at) => match self.next_span(at) {
                    Some(span) => (span, true),
                    None => continue,
                },
                None => match self.next_span(0) {
                    Some(span) => (span, false),
                    None => return,
                },
            };
            self.spawn(span.0, span.1, demand, failures, wait);
        }
    }

    /// Starts a request for `start..end`, after `wait` (a retry's backoff).
    fn spawn(
        &mut self,
        start: u64,
        end: Option<u64>,
        demand: bool,
        failures: u32,
        wait: Option<Duration>,
    ) {
        // A request that another one in flight will meet stops where that
        // one is (no byte is fetched twice)...
        let ahead = self
            .workers
            .iter()
            .map(|(_, w)| w.front.load(Ordering::Acquire))
            .filter(|&front| front > start)
            .min();
        let end = match (end, ahead) {
            (Some(end), Some(ahead)) => Some(end.min(ahead)),
            (end, ahead) => end.or(ahead),
        };
        // ...and a request that was going to fill `start` stops there.
        for (_, worker) in &self.workers {
            let front = worker.front.load(Ordering::Acquire);
            if front <= start && start < worker.limit.load(Ordering::Acquire) {
                worker.limit.store(start, Ordering::Release);
            }
        }
        let front = Arc::new(AtomicU64::new(start));
        let limit = Arc::new(AtomicU64::new(end.unwrap_or(u64::MAX)));
        let context = Arc::clone(&self.context);
        let (task_front, task_limit) = (Arc::clone(&front), Arc::clone(&limit));
        let abort = self.tasks.spawn(async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            request(&context, start, end, &task_front, &task_limit).await
        });
        self.serial += 1;
        self.workers.push((
            abort.id(),
            Worker {
                start,
                front,
                limit,
                demand,
                failures,
                abort,
                serial: self.serial,
                spawned: std::time::Instant::now(),
            },
        ));
    }

    fn take_worker(&mut self, id: tokio::task::Id) -> Option<Worker> {
        let at = self.workers.iter().position(|(each, _)| *each == id)?;
        Some(self.workers.swap_remove(at).1)
    }

    /// A reader blocks on `wanted`: fetch it next, unless a request in
    /// flight is about to deliver it.
    fn serve_demand(&mut self, wanted: &Range<u64>) {
        let upper = self.context.identity.lock().len.unwrap_or(u64::MAX);
        let Some(gap) = self
            .resource()
            .next_gap(wanted.start, wanted.end.min(upper))
        else {
            return; // there already
        };
        let most = self.context.options.front_window;
        let underrun = self.workers.iter().any(|(_, w)| {
            let front = w.front.load(Ordering::Acquire);
            front <= gap.start
                && gap.start < front.saturating_add(w.window(front, most))
                && gap.start < w.limit.load(Ordering::Acquire)
        });
        if underrun || self.slots() == 1 && self.context.identity.lock().ranges == Some(false) {
            return;
        }
        if self.workers.len() >= self.slots() {
            // The request to give up: the in-order fill (its span is asked
            // again once a slot is free), else the oldest seek's, which is
            // remembered and asked again first.
            let victim = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, (_, w))| !w.demand)
                .min_by_key(|(_, (_, w))| w.serial)
                .or_else(|| {
                    self.workers
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, w))| w.serial)
                })
                .map(|(at, _)| at);
            if let Some(at) = victim {
                let (_, worker) = self.workers.swap_remove(at);
                worker.abort.abort();
                if worker.demand {
                    self.pending_demands
                        .push(worker.front.load(Ordering::Acquire));
                }
            }
        }
        let end = self
            .resource()
            .next_gap(gap.start, upper)
            .map_or(gap.end, |whole| whole.end);
        let end = (end != u64::MAX).then_some(end);
        self.spawn(gap.start, end, true, 0, None);
    }

    /// Acts on how a request ended.
    async fn handle(
        &mut self,
        worker: Option<Worker>,
        finished: Finished,
    ) -> Result<(), FetchError> {
        match finished {
            Finished::Done {
                eof,
                end,
                progressed,
            } => {
                let mut identity = self.context.identity.lock();
                if eof && identity.len.is_none() {
                    // A body of unknown length ended: the file's length.
                    identity.len = Some(end);
                    drop(identity);
                    match self.resource().set_expected_len(end) {
                        Ok(()) | Err(StorageError::LengthMismatch { .. }) => {}
                        Err(error) => return Err(self.give_up(FetchError::Storage(error))),
                    }
                    return Ok(());
                }
                drop(identity);
                // An answer that ended with nothing new while its span is
                // still missing (an empty 206): a failure, with backoff.
                let missing = worker.as_ref().is_some_and(|w| {
                    let limit = w.limit.load(Ordering::Acquire);
                    self.resource().next_gap(w.start, limit).is_some()
                });
                if missing && !progressed {
                    let front = worker
                        .as_ref()
                        .map_or(end, |w| w.front.load(Ordering::Acquire));
                    return self.retry(
                        worker,
                        front,
                        false,
                        "an answer with no bytes".into(),
                        None,
                    );
                }
                Ok(())
            }
            Finished::Changed(why) => self.restart(&why).await,
            Finished::NotSatisfiable { asked, total } => {
                let known = self.context.identity.lock().len;
                match (known, total) {
                    // Nothing said about the length, or a 416 for bytes
                    // inside a file of a known length: a failure, retried.
                    (_, None) => self.retry(
                        worker,
                        asked,
                        false,
                        "a 416 without a length".into(),
                        Some(416),
                    ),
                    (Some(len), Some(total)) if len == total && asked < len => self.retry(
                        worker,
                        asked,
                        false,
                        "a 416 inside the file".into(),
                        Some(416),
                    ),
                    (Some(len), Some(total)) if len == total => Ok(()),
                    (Some(_), Some(_)) => self.restart("the file's length changed").await,
                    (None, Some(total)) => {
                        self.context.identity.lock().len = Some(total);
                        match self.resource().set_expected_len(total) {
                            Ok(()) => Ok(()),
                            Err(_) => self.restart("the file is shorter than what is here").await,
                        }
                    }
                }
            }
            Finished::Failed {
                front,
                progressed,
                reason,
                status,
            } => self.retry(worker, front, progressed, reason, status),
            Finished::Refused(status) => Err(self.give_up(FetchError::Status {
                url: self.context.url.clone(),
                status,
            })),
            Finished::Invalid(reason) => Err(self.give_up_invalid(&reason)),
            Finished::Storage(StorageError::Cancelled) => Err(FetchError::Cancelled),
            // Failed or committed by someone else: theirs to say.
            Finished::Storage(error @ (StorageError::Failed(_) | StorageError::Committed)) => {
                Err(FetchError::Storage(error))
            }
            // A full disk, a length the store cannot hold: the resource
            // fails, so its blocked readers get an error, not a hang.
            Finished::Storage(error) => Err(self.give_up(FetchError::Storage(error))),
        }
    }

    /// A request of `worker` failed from `front` (with or without bytes of
    /// progress first): asked again after a backoff, or, after `retries`
    /// failures in a row, the download gives up.
    fn retry(
        &mut self,
        worker: Option<Worker>,
        front: u64,
        progressed: bool,
        reason: String,
        status: Option<u16>,
    ) -> Result<(), FetchError> {
        let failures = worker.as_ref().map_or(0, |w| w.failures);
        let failures = if progressed { 1 } else { failures + 1 };
        if failures > self.context.options.retries {
            let error = match status {
                Some(status) => FetchError::Status {
                    url: self.context.url.clone(),
                    status,
                },
                None => FetchError::Network {
                    url: self.context.url.clone(),
                    reason,
                    attempts: failures,
                },
            };
            return Err(self.give_up(error));
        }
        self.retries += 1;
        let options = &self.context.options;
        let wait = options
            .backoff
            .saturating_mul(1 << (failures - 1).min(16))
            .min(options.max_backoff);
        let (demand, limit) = worker.map_or((false, u64::MAX), |w| {
            (w.demand, w.limit.load(Ordering::Acquire))
        });
        let end = (limit != u64::MAX).then_some(limit);
        if self
            .resource()
            .next_gap(front, end.unwrap_or(u64::MAX))
            .is_some()
        {
            self.spawn(front, end, demand, failures, Some(wait));
        }
        Ok(())
    }

    /// The remote file changed: every request stops, the resource forgets
    /// what it holds, and the download starts over.
    async fn restart(&mut self, why: &str) -> Result<(), FetchError> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(self.give_up_invalid(&format!("the file kept changing ({why})")));
        }
        // Every request stopped before the resource forgets: one in the
        // middle of a write of the old version finishes it first.
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.workers.clear();
        self.pending_demands.clear();
        self.resource().restart().map_err(FetchError::Storage)?;
        *self.context.identity.lock() = Identity::default();
        Ok(())
    }

    fn give_up_invalid(&mut self, reason: &str) -> FetchError {
        self.give_up(FetchError::InvalidResponse {
            url: self.context.url.clone(),
            reason: reason.to_owned(),
        })
    }

    /// Stops every request and fails the resource with `error`, so readers
    /// blocked on it get an error instead of waiting for good.
    fn give_up(&mut self, error: FetchError) -> FetchError {
        self.tasks.abort_all();
        self.workers.clear();
        self.resource().fail(error.to_string());
        error
    }
}
