//! [`Cache::get_or_load_many`]: a batch loader with per-key single-flight.
//!
//! Each key goes through `memo` like a single call: its look-up, then `Miss::load`, whose
//! loader is a request to this batch's driver. The driver collects the requests of every key
//! this batch leads (keys another caller is loading wait for that load instead) and calls the
//! user's loader once with them; a key whose load is handed over later (its leader failed or
//! went away) comes in a later call.

use std::collections::{hash_map, HashMap};
use std::future::Future;
use std::sync::Arc;

use futures_util::future::{join, join_all};
use tokio::sync::{mpsc, oneshot};

use crate::cache::Cache;
use crate::engine::clock;
use crate::engine::entry::Entry;
use crate::engine::pipeline;
use crate::key::Key;
use crate::memo::{
    self, KeepShared, LoadOptions, Lookup, Miss, Pending, Policy, Refresh, ResultShape, Shareable,
};

/// Why one key of a batch has no value: a load result that is never stored.
#[derive(Debug)]
enum Missing {
    /// The loader answered without this key.
    NotFound,
    /// The loader failed (its error is the batch's).
    Failed,
}

type KeyResult<T> = Result<T, Missing>;

/// One key's request to the driver.
type Request<T> = (Key, oneshot::Sender<KeyResult<T>>);

impl Cache {
    /// The values under `keys`, in their order, loading only those that are missing with one
    /// call of `load` (`None`: the loader did not return that key; it is not stored).
    ///
    /// `load` receives the missing keys (each once, also when `keys` repeats one) and returns
    /// the values it found; found values are stored with `options`, as
    /// [`get_or_load`](Self::get_or_load) stores them (same entries: a value loaded one way
    /// is a hit the other way). Keys in their stale window are served and refreshed together
    /// by one background call of `load`. Each key is looked up as a single call would be
    /// (counted in [`stats`](Self::stats) and traced as a `cache.lookup` span; a key that
    /// `keys` repeats, each time it appears); memory is read at one instant for the batch.
    ///
    /// # Concurrent calls on the same keys
    /// Per key, as for single loads: a key that another caller (batch or single) is loading
    /// is waited for, not loaded again, so overlapping concurrent batches load each missing key
    /// once. If that caller fails or goes away, the key is loaded by a further call of `load`.
    /// With [`lock`](LoadOptions::lock), keys whose lock is taken late come in a further call.
    ///
    /// # Reads from Redis
    /// Keys that memory does not answer are read from Redis in one round trip: one pipeline
    /// on one Redis; on a cluster, the reads are sent together, each to its key's node.
    /// Values loaded are written as every load's are, in the background. Redis failures are
    /// misses (the keys are loaded), never errors.
    ///
    /// # Timeouts
    /// None: a [`soft_timeout`](LoadOptions::soft_timeout) in `options` is not applied here,
    /// and there is no batch hard timeout. A timed load must outlive the caller it answered
    /// early (so that it stores), hence runs on a task of its own; a batch's keys instead
    /// reach the loader in one call that the caller's task makes once every key this batch
    /// leads has asked. Moving each key's load to a task would split that call as the tasks
    /// happen to be scheduled; moving the whole batch to one task needs the batch to take the
    /// lead of its keys before spawning, which the per-key single-flight does not offer yet.
    /// To bound a batch, wrap the call in `tokio::time::timeout` (a load cut short stores
    /// nothing), or load keys singly with [`get_or_load`](Self::get_or_load).
    ///
    /// # Errors
    /// The loader's `Err`, when a key it should have loaded has no value to serve (a value in
    /// its [`stale_if_error`](LoadOptions::stale_if_error) window is served instead).
    ///
    /// ```
    /// use std::collections::{hash_map, HashMap};
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::io::Error> {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60));
    /// let key = |id: u64| Key::new("user").part(id);
    /// let load = |missing: Vec<Key>| async move {
    ///     // One query for every missing key: `WHERE id IN (...)`.
    ///     Ok::<_, std::io::Error>(
    ///         missing.into_iter().filter(|k| k != &Key::new("user").part(3)).map(|k| {
    ///             let name = format!("name of {k}");
    ///             (k, name)
    ///         }).collect::<HashMap<_, _>>(),
    ///     )
    /// };
    /// let first = cache.get_or_load_many(&[key(1), key(2)], &options, load).await?;
    /// let second = cache.get_or_load_many(&[key(1), key(2), key(3)], &options, load).await?;
    /// assert_eq!(second[..2], first[..]);
    /// assert_eq!(second[2], None); // user 3 does not exist
    /// assert_eq!(cache.stats().loads, 3); // per key: 1 and 2 in one call, then 3
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_many<T, E, F, Fut>(
        &self,
        keys: &[Key],
        options: &LoadOptions,
        load: F,
    ) -> Result<Vec<Option<T>>, E>
    where
        T: Shareable,
        E: Send + 'static,
        F: Fn(Vec<Key>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<Key, T>, E>> + Send + 'static,
    {
        let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut stale = Vec::new();
        // Only keys memory does not answer are tracked further: a batch of hits allocates
        // nothing but its result.
        let mut rest = Vec::new();
        // One clock reading for the batch: its keys are judged at the same instant.
        let (site, now) = (&options.site, Some(clock::now()));
        for (slot, key) in keys.iter().enumerate() {
            match memo::lookup_now_at::<KeyResult<T>, ResultShape>(self, site, key.as_str(), now) {
                Ok(Lookup::Hit(value)) => values.push(value.ok()),
                Ok(Lookup::Stale(value, refresh)) => {
                    values.push(value.ok());
                    stale.extend(refresh.map(|refresh| (key.clone(), refresh)));
                }
                Ok(Lookup::Miss(miss)) => {
                    values.push(None);
                    rest.push((slot, Unanswered::Miss(miss)));
                }
                Err(pending) => {
                    values.push(None);
                    rest.push((slot, Unanswered::Pending(pending)));
                }
            }
        }
        if stale.is_empty() && rest.is_empty() {
            return Ok(values);
        }
        let load = Arc::new(load);
        let (rest, copies) = dedupe(keys, rest);
        let misses = answer_from_shared(self, keys, rest, &mut values, &mut stale).await;
        refresh_in_background(self, Arc::clone(&load), stale, options);
        let failed = load_misses(self, &*load, misses, options, &mut values, keys).await;
        if let Some(error) = failed {
            return Err(error);
        }
        for (slot, first) in copies {
            values[slot] = values[first].clone();
        }
        Ok(values)
    }
}

/// A key of a batch that memory did not answer.
enum Unanswered<'a, T> {
    /// A miss (no shared tier, or caching off).
    Miss(Miss<'a, ResultShape>),
    /// To be read from the shared tier.
    Pending(Pending<'a, KeyResult<T>, ResultShape>),
}

/// The unanswered keys, each once (first seen), and for each repeat the slot of the key's
/// first occurrence: a repeated key is looked up in the shared tier and loaded once.
#[allow(clippy::type_complexity)]
fn dedupe<'a, T>(
    keys: &[Key],
    rest: Vec<(usize, Unanswered<'a, T>)>,
) -> (Vec<(usize, Unanswered<'a, T>)>, Vec<(usize, usize)>) {
    let mut seen: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(rest.len(), foldhash::fast::RandomState::default());
    let mut unique = Vec::with_capacity(rest.len());
    let mut copies = Vec::new();
    for (slot, unanswered) in rest {
        match seen.entry(keys[slot].as_str()) {
            hash_map::Entry::Occupied(first) => copies.push((slot, *first.get())),
            hash_map::Entry::Vacant(vacant) => {
                vacant.insert(slot);
                unique.push((slot, unanswered));
            }
        }
    }
    (unique, copies)
}

/// Answers the keys memory did not, from the shared tier read in one pipeline: fills
/// `values` and `stale`, and returns the misses.
async fn answer_from_shared<'a, T: Shareable>(
    cache: &Cache,
    keys: &[Key],
    rest: Vec<(usize, Unanswered<'a, T>)>,
    values: &mut [Option<T>],
    stale: &mut Vec<(Key, Refresh<ResultShape>)>,
) -> Vec<(usize, Miss<'a, ResultShape>)> {
    let names: Vec<&str> = rest
        .iter()
        .filter(|(_, unanswered)| matches!(unanswered, Unanswered::Pending(_)))
        .map(|&(slot, _)| keys[slot].as_str())
        .collect();
    let mut shared = read_shared::<T>(cache, &names).await.into_iter();
    let mut misses = Vec::new();
    for (slot, unanswered) in rest {
        let lookup = match unanswered {
            Unanswered::Miss(miss) => Lookup::Miss(miss),
            Unanswered::Pending(pending) => pending.answer(shared.next().flatten()),
        };
        match lookup {
            Lookup::Hit(value) => values[slot] = value.ok(),
            Lookup::Stale(value, refresh) => {
                values[slot] = value.ok();
                stale.extend(refresh.map(|refresh| (keys[slot].clone(), refresh)));
            }
            Lookup::Miss(miss) => misses.push((slot, miss)),
        }
    }
    misses
}

/// The shared tier's entries for `keys`, in order, read with one pipeline.
async fn read_shared<T: Shareable>(cache: &Cache, keys: &[&str]) -> Vec<Option<Arc<Entry>>> {
    let remote = cache.shared_tier().filter(|_| !keys.is_empty());
    let Some(remote) = remote else {
        return vec![None; keys.len()];
    };
    cache.listen_for_invalidations();
    let since = cache.inner().log().current();
    let read = remote.store.get_many(keys).await;
    keys.iter()
        .zip(read)
        .map(|(key, bytes)| memo::decode_shared::<T, KeepShared>(cache, key, &bytes?, since))
        .collect()
}

/// Loads the missed keys under single-flight, the ones this batch leads with as few calls of
/// `load` as their requests arrive in; fills `values`. The loader's error when a key ended
/// without a value because of it.
async fn load_misses<T, E, F, Fut>(
    cache: &Cache,
    load: &F,
    misses: Vec<(usize, Miss<'_, ResultShape>)>,
    options: &LoadOptions,
    values: &mut [Option<T>],
    keys: &[Key],
) -> Option<E>
where
    T: Shareable,
    F: Fn(Vec<Key>) -> Fut,
    Fut: Future<Output = Result<HashMap<Key, T>, E>>,
{
    if misses.is_empty() {
        return None;
    }
    // Read once for the batch, before any load begins: a read per load would make each reach
    // the loader at its own time, in several calls.
    let shared_since = pipeline::read_shared_since(cache).await;
    let (requests, received) = mpsc::unbounded_channel::<Request<T>>();
    let loads: Vec<_> = misses
        .into_iter()
        .map(|(slot, miss)| {
            let requests = requests.clone();
            let key = keys[slot].clone();
            // Polled only when this batch leads the key: then it asks the driver for its value.
            let request = async move {
                let (reply, answer) = oneshot::channel();
                if requests.send((key, reply)).is_err() {
                    return Err(Missing::Failed);
                }
                answer.await.unwrap_or(Err(Missing::Failed))
            };
            async move {
                let loaded = miss
                    .with_shared_since(shared_since)
                    .load(options.tags.clone(), Policy::default(), request)
                    .await;
                (slot, loaded)
            }
        })
        .collect();
    drop(requests);
    let driver = drive(load, received);
    // The keys' loads first: each one this batch leads sends its request before the driver
    // first looks, so they make one call.
    let (loaded, error) = join(join_all(loads), driver).await;
    let mut failed = false;
    for (slot, result) in loaded {
        match result {
            Ok(value) => values[slot] = Some(value),
            Err(Missing::NotFound) => {}
            Err(Missing::Failed) => failed = true,
        }
    }
    error.filter(|_| failed)
}

/// Answers the keys' requests: those that arrive together in one call of `load`. The first
/// error of `load`, if any.
async fn drive<T, E, F, Fut>(
    load: &F,
    mut received: mpsc::UnboundedReceiver<Request<T>>,
) -> Option<E>
where
    F: Fn(Vec<Key>) -> Fut,
    Fut: Future<Output = Result<HashMap<Key, T>, E>>,
{
    let mut error = None;
    while let Some(first) = received.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = received.try_recv() {
            batch.push(more);
        }
        let keys = batch.iter().map(|(key, _)| key.clone()).collect();
        match load(keys).await {
            Ok(mut found) => {
                for (key, reply) in batch {
                    let _ = reply.send(found.remove(&key).ok_or(Missing::NotFound));
                }
            }
            Err(failure) => {
                error.get_or_insert(failure);
                for (_, reply) in batch {
                    let _ = reply.send(Err(Missing::Failed));
                }
            }
        }
    }
    error
}

/// Refreshes the stale keys this batch claimed with one call of `load` on a task of its own;
/// each value is stored through its key's [`Refresh`]. Keys the loader does not return, or a
/// failed call, release their claims (a later look-up tries again).
fn refresh_in_background<T, E, F, Fut>(
    cache: &Cache,
    load: Arc<F>,
    stale: Vec<(Key, Refresh<ResultShape>)>,
    options: &LoadOptions,
) where
    T: Shareable,
    E: Send + 'static,
    F: Fn(Vec<Key>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HashMap<Key, T>, E>> + Send + 'static,
{
    if stale.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let tags = options.tags.clone();
    let cache = cache.clone();
    runtime.spawn(async move {
        // Before the source is read, as a single load does.
        let shared_since = pipeline::read_shared_since(&cache).await;
        let keys = stale.iter().map(|(key, _)| key.clone()).collect();
        let Ok(mut found) = load(keys).await else {
            return;
        };
        for (key, refresh) in stale {
            if let Some(value) = found.remove(&key) {
                let loaded = std::future::ready(Ok::<T, Missing>(value));
                let refresh = refresh.with_shared_since(shared_since);
                refresh.spawn(tags.clone(), Policy::default(), loaded);
            }
        }
    });
}
