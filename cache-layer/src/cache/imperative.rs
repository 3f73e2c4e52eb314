//! The imperative API on [`Cache`]: get, insert, load and remove by hand, through the same
//! engine as `#[cached]` (`memo`'s look-up, single-flight, stale windows and store gate).

use std::future::Future;

use crate::cache::{Cache, SharedWrite};
use crate::engine::sites::SiteSlot;
use crate::engine::timed_out::{CarriesTimeout, TimeoutError};
use crate::key::Key;
use crate::memo::{
    self, HardTimeout, KeepShared, LoadOptions, Lookup, PlainShape, Policy, ResultOptionShape,
    ResultShape, Shape, Shareable, Site, Storable,
};

/// The site [`Cache::get`] looks up with: it never loads, so its windows are unused.
static GET: Site = Site {
    name: "cache_layer::Cache::get",
    ttl: std::time::Duration::ZERO,
    stale: std::time::Duration::ZERO,
    stale_if_error: std::time::Duration::ZERO,
    none_ttl: None,
    jitter: None,
    lock: None,
    counters: SiteSlot::new(),
    timeouts: crate::engine::pipeline::Timeouts::NONE,
};

impl Cache {
    /// The value stored under `key`, while it is fresh or in its stale window (returned as
    /// it is: there is no loader to refresh it); `None` otherwise, also when a value of
    /// another type is stored there. Reads memory, then the shared tier; a Redis failure is
    /// `None`, never an error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = Cache::builder().build().unwrap();
    /// let key = Key::new("greeting").part("en");
    /// assert_eq!(cache.get::<String>(&key).await, None);
    /// cache.insert(&key, "hello".to_owned(), &LoadOptions::new(Duration::from_secs(60))).await;
    /// assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("hello"));
    /// assert_eq!(cache.get::<u64>(&key).await, None); // another type: a miss
    /// # }
    /// ```
    pub async fn get<T: Shareable>(&self, key: &Key) -> Option<T> {
        match memo::lookup::<T, PlainShape>(self, &GET, PlainShape, key.as_str()).await {
            Lookup::Hit(value) | Lookup::Stale(value, _) => Some(value),
            Lookup::Miss(_) => None,
        }
    }

    /// Stores `value` under `key` with `options`' lifetime and tags, replacing what is there:
    /// in memory and, on a shared tier, in Redis (written before `insert` returns, so that
    /// every instance reads it next; a load's write is made in the background instead). A
    /// failed Redis write is counted and logged, never returned. Unless `key` or
    /// one of the tags is invalidated while it is being stored, the next look-up finds it.
    pub async fn insert<T: Shareable>(&self, key: &Key, value: T, options: &LoadOptions) {
        let since = self.inner().log().current();
        let tags: Box<[Box<str>]> = options.tags.iter().map(|t| t.as_str().into()).collect();
        let lifetime = Some(options.site.lifetime());
        // Awaited: after `insert` returns, every instance reads the value (not only this one).
        let write = SharedWrite::Awaited;
        memo::store_value::<T, KeepShared>(
            self,
            key.as_str(),
            &tags,
            &value,
            lifetime,
            since,
            write,
        )
        .await;
    }

    /// Warms the cache: [`insert`](Self::insert)s each of `entries` with `options` (at
    /// start-up, before traffic arrives).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(300)).tag("countries");
    /// let countries = [("fr", "France"), ("de", "Germany")];
    /// cache
    ///     .prime(countries.map(|(code, name)| (Key::new("country").part(code), name.to_owned())), &options)
    ///     .await;
    /// assert_eq!(cache.entry_count(), 2);
    /// cache.invalidate("countries").await; // drops both
    /// assert_eq!(cache.entry_count(), 0);
    /// # }
    /// ```
    pub async fn prime<T, I>(&self, entries: I, options: &LoadOptions)
    where
        T: Shareable,
        I: IntoIterator<Item = (Key, T)>,
    {
        for (key, value) in entries {
            self.insert(&key, value, options).await;
        }
    }

    /// The value under `key`, or else the value `load` produces, stored with `options`: what
    /// a `#[cached]` function returning `Result<T, E>` does, with the same engine. `Ok` is
    /// stored, `Err` never; `load` runs only on a miss (or, with
    /// [`stale`](LoadOptions::stale), in the background for a stale value).
    ///
    /// The future `load` returns must be `Send + 'static` (clone what it needs into it): a
    /// stale value's refresh runs it on a task of its own.
    ///
    /// # Concurrent calls on the same key
    /// One caller runs its loader; the others wait for its value, as for `#[cached]`. If
    /// the leader is cancelled, panics or fails, a waiter loads with its own loader.
    ///
    /// # Timeouts
    /// With a [`soft_timeout`](LoadOptions::soft_timeout), a load slower than it answers its
    /// caller (and the callers waiting on it) with the stale value it has, while it finishes
    /// and stores in the background; without a stale value the caller keeps waiting. For a
    /// hard timeout, which returns an error, see [`get_or_load_within`](Self::get_or_load_within).
    ///
    /// # Errors
    /// The loader's `Err` (unless a value in its [`stale_if_error`](LoadOptions::stale_if_error)
    /// window is served instead). Store failures never fail the call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::io::Error> {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60)).tag("users");
    /// let key = Key::new("user").part(7);
    /// let name: String = cache
    ///     .get_or_load(&key, &options, || async { Ok::<_, std::io::Error>("Ada".to_owned()) })
    ///     .await?;
    /// let again: String = cache
    ///     .get_or_load(&key, &options, || async { Ok::<_, std::io::Error>("not called".to_owned()) })
    ///     .await?;
    /// assert_eq!((name.as_str(), again.as_str()), ("Ada", "Ada"));
    /// assert_eq!(cache.stats().loads, 1);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &Key,
        options: &LoadOptions,
        load: F,
    ) -> Result<T, E>
    where
        T: Shareable,
        E: Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.load_shaped(key, &options.site, &options.tags, ResultShape, None, load)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) for a loader that may find nothing: `Ok(Some)` is
    /// stored, `Ok(None)` only with [`none_ttl`](LoadOptions::none_ttl) (negative caching,
    /// against lookups of ids that do not exist), `Err` never: what a `#[cached]` function
    /// returning `Result<Option<T>, E>` does. Its entries hold `Option<T>`, so
    /// [`get`](Self::get) reads them as `Option<T>`.
    ///
    /// # Errors
    /// The loader's `Err`, as for [`get_or_load`](Self::get_or_load).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60)).none_ttl(Duration::from_secs(5));
    /// for _ in 0..3 {
    ///     let found = cache
    ///         .get_or_load_optional(&Key::new("user").part(404), &options, || async {
    ///             Ok::<Option<String>, std::io::Error>(None)
    ///         })
    ///         .await;
    ///     assert!(matches!(found, Ok(None)));
    /// }
    /// assert_eq!(cache.stats().loads, 1); // the `None` was cached for 5 s
    /// # }
    /// ```
    pub async fn get_or_load_optional<T, E, F, Fut>(
        &self,
        key: &Key,
        options: &LoadOptions,
        load: F,
    ) -> Result<Option<T>, E>
    where
        T: Shareable,
        E: Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
    {
        let shape = ResultOptionShape;
        self.load_shaped(key, &options.site, &options.tags, shape, None, load)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) with a hard timeout: a load slower than `within`
    /// answers its caller, and the callers waiting on it, with the stale value it has (an entry
    /// in its [`stale_if_error`](LoadOptions::stale_if_error) window, or a soft-purged one),
    /// else with `Err(E::from(TimeoutError))`; the load goes on and stores in the background,
    /// unless [`finish_on_hard_timeout(false)`](HardTimeout::finish_on_hard_timeout) cancels it.
    /// `options`' [`soft_timeout`](LoadOptions::soft_timeout), if shorter, applies first. What
    /// `#[cached(hard_timeout = ...)]` does; the loader's error must convert from
    /// [`TimeoutError`] (`std::io::Error` and `String` do; for an error enum of your own, a
    /// variant holding it).
    ///
    /// # Errors
    /// The loader's `Err`, or the hard timeout's [`TimeoutError`], converted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, HardTimeout, Key, LoadOptions, TimeoutError};
    ///
    /// #[derive(Debug)]
    /// enum DbError {
    ///     Timeout(TimeoutError),
    /// }
    ///
    /// impl From<TimeoutError> for DbError {
    ///     fn from(error: TimeoutError) -> Self {
    ///         DbError::Timeout(error)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60));
    /// let (key, within) = (Key::new("report"), HardTimeout::after(Duration::from_millis(10)));
    /// let slow = cache.get_or_load_within(&key, &options, within, || async {
    ///     tokio::time::sleep(Duration::from_secs(5)).await;
    ///     Ok::<_, DbError>("done".to_owned())
    /// });
    /// assert!(matches!(slow.await, Err(DbError::Timeout(_))));
    /// assert_eq!(cache.stats().hard_timeouts, 1);
    /// # }
    /// ```
    pub async fn get_or_load_within<T, E, F, Fut>(
        &self,
        key: &Key,
        options: &LoadOptions,
        within: HardTimeout,
        load: F,
    ) -> Result<T, E>
    where
        T: Shareable,
        E: From<TimeoutError> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let site = within.on(&options.site);
        let timed_out = Some(<Result<T, E>>::timed_out as fn(TimeoutError) -> Result<T, E>);
        self.load_shaped(key, &site, &options.tags, ResultShape, timed_out, load)
            .await
    }

    /// [`get_or_load_optional`](Self::get_or_load_optional) with a hard timeout, as
    /// [`get_or_load_within`](Self::get_or_load_within) has.
    ///
    /// # Errors
    /// The loader's `Err`, or the hard timeout's [`TimeoutError`], converted.
    pub async fn get_or_load_optional_within<T, E, F, Fut>(
        &self,
        key: &Key,
        options: &LoadOptions,
        within: HardTimeout,
        load: F,
    ) -> Result<Option<T>, E>
    where
        T: Shareable,
        E: From<TimeoutError> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'static,
    {
        let site = within.on(&options.site);
        let timed_out = Some(<Result<Option<T>, E>>::timed_out as fn(TimeoutError) -> _);
        let shape = ResultOptionShape;
        self.load_shaped(key, &site, &options.tags, shape, timed_out, load)
            .await
    }

    /// Removes the entry under `key` everywhere: [`invalidate`](Self::invalidate) of its
    /// text, so loads of it in flight discard their result, Redis and every instance's memory
    /// drop it, and entries tagged with the same text go too.
    pub async fn remove(&self, key: &Key) {
        self.invalidate(key.as_str()).await;
    }
}

impl Cache {
    /// What [`Cache::get_or_load`], [`Cache::get_or_load_optional`] and their `_within`
    /// siblings share: the look-up, then a background refresh of a stale value or a load under
    /// single-flight, for a result of shape `S`, within `site`'s timeouts. `timed_out`: the
    /// answer past the hard timeout, which only a return type that carries a
    /// [`TimeoutError`] has (without it, no hard timeout is raced).
    #[inline]
    async fn load_shaped<R, S, F, Fut>(
        &self,
        key: &Key,
        site: &Site,
        tags: &[String],
        shape: S,
        timed_out: Option<fn(TimeoutError) -> R>,
        load: F,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
        S::Success: 'static,
        R: Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        // A hit is answered without building the shared tier's future.
        let found = match memo::lookup_now(self, site, shape, key.as_str()) {
            Ok(found) => found,
            Err(pending) => pending.finish().await,
        };
        match found {
            Lookup::Hit(value) => value,
            Lookup::Stale(value, refresh) => {
                if let Some(refresh) = refresh {
                    refresh.spawn(tags.to_vec(), Policy::default(), load());
                }
                value
            }
            Lookup::Miss(miss) => {
                miss.load_within(tags.to_vec(), Policy::default(), load(), timed_out)
                    .await
            }
        }
    }
}
