//! [`Cache::get_or_load_many`]: a batch loader with per-key single-flight.
//!
//! Each key goes through `memo` like a single call: its look-up, then `Miss::load`, whose
//! loader is a request to this batch's driver. The driver collects the requests of every key
//! this batch leads (keys another caller is loading wait for that load instead) and calls the
//! user's loader once with them; a key whose load is handed over later (its leader failed or
//! went away) comes in a later call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::{join, join_all};
use tokio::sync::{mpsc, oneshot};

use crate::cache::Cache;
use crate::entry::Entry;
use crate::key::Key;
use crate::memo::{self, Lookup, Miss, Policy, Refresh, Site};
use crate::options::LoadOptions;
use crate::shape::{Cacheable, ResultShape};

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
    /// by one background call of `load`.
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
    /// # Errors
    /// The loader's `Err`, when a key it should have loaded has no value to serve (a value in
    /// its [`stale_if_error`](LoadOptions::stale_if_error) window is served instead).
    ///
    /// ```
    /// use std::collections::HashMap;
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
        T: Cacheable,
        E: Send + 'static,
        F: Fn(Vec<Key>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<Key, T>, E>> + Send + 'static,
    {
        let load = Arc::new(load);
        let (unique, slot_of) = dedupe(keys);
        let mut values: Vec<Option<T>> = Vec::with_capacity(unique.len());
        let mut stale = Vec::new();
        let mut misses = Vec::new();
        let lookups = lookup_all::<T>(self, &options.site, &unique).await;
        for (slot, lookup) in lookups.into_iter().enumerate() {
            match lookup {
                Lookup::Hit(value) => values.push(value.ok()),
                Lookup::Stale(value, refresh) => {
                    values.push(value.ok());
                    stale.extend(refresh.map(|refresh| (unique[slot].clone(), refresh)));
                }
                Lookup::Miss(miss) => {
                    values.push(None);
                    misses.push((slot, miss));
                }
            }
        }
        refresh_in_background(self, Arc::clone(&load), stale, options);
        let failed = load_misses(self, &*load, misses, options, &mut values, &unique).await;
        if let Some(error) = failed {
            return Err(error);
        }
        if unique.len() == keys.len() {
            // No key repeated: the slots are the keys' positions.
            return Ok(values);
        }
        Ok(slot_of.iter().map(|&slot| values[slot].clone()).collect())
    }
}

/// The distinct keys in first-seen order, and each key's index among them.
fn dedupe(keys: &[Key]) -> (Vec<&Key>, Vec<usize>) {
    let mut unique: Vec<&Key> = Vec::with_capacity(keys.len());
    let mut seen: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(keys.len(), foldhash::fast::RandomState::default());
    let slot_of = keys
        .iter()
        .map(|key| {
            *seen.entry(key.as_str()).or_insert_with(|| {
                unique.push(key);
                unique.len() - 1
            })
        })
        .collect();
    (unique, slot_of)
}

/// Looks every key up as `memo::lookup` does, memory first, then the shared tier for the
/// rest in one pipelined read.
async fn lookup_all<'a, T: Cacheable>(
    cache: &'a Cache,
    site: &'a Site,
    keys: &[&'a Key],
) -> Vec<Lookup<'a, KeyResult<T>, ResultShape>> {
    let mut found: Vec<Option<Lookup<'a, KeyResult<T>, ResultShape>>> = Vec::new();
    let mut unanswered = Vec::new();
    for (slot, key) in keys.iter().enumerate() {
        match memo::lookup_local(cache, site, key.as_str()) {
            Ok(lookup) => found.push(Some(lookup)),
            Err(fallback) => {
                found.push(None);
                unanswered.push((slot, fallback));
            }
        }
    }
    let names: Vec<&str> = unanswered
        .iter()
        .map(|&(slot, _)| keys[slot].as_str())
        .collect();
    let shared = read_shared::<T>(cache, &names).await;
    for ((slot, fallback), entry) in unanswered.into_iter().zip(shared) {
        let key = keys[slot].as_str();
        found[slot] = Some(memo::lookup_shared(cache, site, key, entry, fallback));
    }
    found.into_iter().flatten().collect()
}

/// The shared tier's entries for `keys`, in order, read with one pipeline; all `None`
/// without a shared tier.
async fn read_shared<T: Cacheable>(cache: &Cache, keys: &[&str]) -> Vec<Option<Arc<Entry>>> {
    let remote = cache.remote().filter(|_| !keys.is_empty());
    let Some(remote) = remote else {
        return vec![None; keys.len()];
    };
    cache.listen_for_invalidations();
    let since = cache.inner().log().current();
    let read = remote.store.get_many(keys).await;
    keys.iter()
        .zip(read)
        .map(|(key, bytes)| memo::shared_entry::<T>(cache, key, &bytes?, since))
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
    unique: &[&Key],
) -> Option<E>
where
    T: Cacheable,
    F: Fn(Vec<Key>) -> Fut,
    Fut: Future<Output = Result<HashMap<Key, T>, E>>,
{
    if misses.is_empty() {
        return None;
    }
    // Read once for the batch, before any load begins: a read per load would make each reach
    // the loader at its own time, in several calls.
    let shared_since = memo::read_shared_since(cache).await;
    let (requests, received) = mpsc::unbounded_channel::<Request<T>>();
    let loads: Vec<_> = misses
        .into_iter()
        .map(|(slot, miss)| {
            let requests = requests.clone();
            let key = unique[slot].clone();
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
    T: Cacheable,
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
        let shared_since = memo::read_shared_since(&cache).await;
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
