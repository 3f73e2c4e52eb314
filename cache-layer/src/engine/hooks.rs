//! Hooks: callbacks an application sets on the builder to hear of evictions
//! ([`CacheBuilder::on_eviction`](crate::CacheBuilder::on_eviction)), invalidations and
//! clears ([`on_invalidation`](crate::CacheBuilder::on_invalidation)) and failed loads
//! ([`on_load_error`](crate::CacheBuilder::on_load_error)): the events they are given, and
//! how they are called.
//!
//! A hook runs on the thread that made the event, synchronously; one that panics is caught
//! (`catch_unwind`), counted ([`Stats::hook_panics`](crate::Stats::hook_panics)) and logged,
//! and the request goes on. None is called on the hit path, and with no hook set an event
//! costs one branch where it is made.

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use super::stats::{Counter, Counters};

/// Why an entry left the in-memory store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvictionCause {
    /// Evicted to stay inside the memory budget (least recently used first).
    Size,
    /// Past its last window (fresh, stale, stale-if-error): removed when it was next read.
    Expired,
    /// A newer entry was stored under its key.
    Replaced,
    /// Removed by an invalidation of its key or a tag, a clear, or a store that found its load
    /// invalidated meanwhile; also when memory is emptied because this instance may have
    /// missed other instances' invalidations (a Redis outage).
    Invalidated,
}

/// An entry that left the in-memory store, given to the
/// [`on_eviction`](crate::CacheBuilder::on_eviction) hook.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Eviction<'a> {
    /// The entry's key (for HTTP responses, the key the layer stores them under: `GET <url>`,
    /// and for a response that varies, the URL's variant keys and its `Vary` record).
    pub key: &'a str,
    /// Why it left.
    pub cause: EvictionCause,
}

/// What an invalidation named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidated<'a> {
    /// [`Cache::invalidate`](crate::Cache::invalidate): the entry stored under this name and
    /// every entry tagged with it.
    Name(&'a str),
    /// [`Cache::soft_invalidate`](crate::Cache::soft_invalidate) of this name.
    SoftPurge(&'a str),
    /// [`Cache::clear_prefix`](crate::Cache::clear_prefix): every key starting with it.
    Prefix(&'a str),
    /// [`Cache::clear`]: every entry.
    ///
    /// [`Cache::clear`]: crate::Cache::clear
    Everything,
}

/// Where an invalidation was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// By a call on this instance.
    Local,
    /// By another instance, heard over the shared tier's pub/sub channel.
    Remote,
}

/// An invalidation applied on this instance, given to the
/// [`on_invalidation`](crate::CacheBuilder::on_invalidation) hook.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Invalidation<'a> {
    /// What it named.
    pub what: Invalidated<'a>,
    /// Made here, or heard from another instance.
    pub origin: Origin,
}

/// A load that failed, given to the [`on_load_error`](crate::CacheBuilder::on_load_error)
/// hook: a `#[cached]` function or loader that returned an error, or an inner HTTP or gRPC
/// service that failed or answered with a server error.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct LoadFailure<'a> {
    /// The key being loaded.
    pub key: &'a str,
    /// The HTTP status of a failed response (`5xx`), when there was one.
    pub status: Option<u16>,
}

/// The [`on_eviction`](crate::CacheBuilder::on_eviction) hook.
pub(crate) type EvictionHook = Arc<dyn Fn(&Eviction<'_>) + Send + Sync>;
/// The [`on_invalidation`](crate::CacheBuilder::on_invalidation) hook.
pub(crate) type InvalidationHook = Arc<dyn Fn(&Invalidation<'_>) + Send + Sync>;
/// The [`on_load_error`](crate::CacheBuilder::on_load_error) hook.
pub(crate) type LoadErrorHook = Arc<dyn Fn(&LoadFailure<'_>) + Send + Sync>;

/// The hooks of one cache, as set on its builder.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) eviction: Option<EvictionHook>,
    pub(crate) invalidation: Option<InvalidationHook>,
    pub(crate) load_error: Option<LoadErrorHook>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("eviction", &self.eviction.is_some())
            .field("invalidation", &self.invalidation.is_some())
            .field("load_error", &self.load_error.is_some())
            .finish()
    }
}

/// Runs `hook` (one hook's call, named `what` in the log); a panic is caught, counted and
/// logged.
pub(crate) fn guarded(counters: &Counters, what: &'static str, hook: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        counters.add(Counter::HookPanic);
        tracing::error!(
            cache = counters.name(),
            hook = what,
            "a hook panicked; the panic was caught and the request went on"
        );
    }
}

impl Hooks {
    /// Tells the invalidation hook, if set, of `what` (made at `origin`).
    pub(crate) fn invalidated(&self, counters: &Counters, what: Invalidated<'_>, origin: Origin) {
        if let Some(hook) = &self.invalidation {
            let event = Invalidation { what, origin };
            guarded(counters, "on_invalidation", || hook(&event));
        }
    }

    /// Tells the load error hook, if set, that the load of `key` failed (with `status`).
    pub(crate) fn load_failed(&self, counters: &Counters, key: &str, status: Option<u16>) {
        if let Some(hook) = &self.load_error {
            let event = LoadFailure { key, status };
            guarded(counters, "on_load_error", || hook(&event));
        }
    }
}

/// The names this instance published invalidations of and has not heard back yet, so that
/// hearing its own message is not reported as another instance's invalidation. Kept only while
/// an invalidation hook is set; bounded (when full it is emptied: at worst, a few of this
/// instance's own invalidations are reported again as remote).
#[derive(Default)]
pub(crate) struct Echoes(Mutex<HashMap<Box<str>, u32>>);

/// How many names [`Echoes`] remembers.
const MAX_ECHOES: usize = 4096;

impl Echoes {
    /// This instance is about to publish an invalidation of `name`.
    pub(crate) fn sending(&self, name: &str) {
        let mut names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if names.len() >= MAX_ECHOES && !names.contains_key(name) {
            names.clear();
        }
        *names.entry(name.into()).or_default() += 1;
    }

    /// Whether `name`, heard on the channel, is this instance's own invalidation coming back.
    #[cfg(feature = "redis")]
    pub(crate) fn heard(&self, name: &str) -> bool {
        let mut names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match names.get_mut(name) {
            Some(1) => {
                names.remove(name);
                true
            }
            Some(count) => {
                *count -= 1;
                true
            }
            None => false,
        }
    }
}
