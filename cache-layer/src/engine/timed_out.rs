//! What a load past its hard timeout answers: [`TimeoutError`], and the return types that
//! carry one ([`CarriesTimeout`]). The race itself is `timeout.rs`'s.

use std::fmt;
use std::time::Duration;

/// A load took longer than its hard timeout, and no stale value could stand in.
///
/// What a `#[cached(hard_timeout = ...)]` function (whose error type converts from it) and
/// [`Cache::get_or_load_within`](crate::Cache::get_or_load_within) and
/// [`get_or_load_optional_within`](crate::Cache::get_or_load_optional_within) return then; the
/// [`CacheLayer`](crate::http::CacheLayer) answers `504 Gateway Timeout` instead. Converts into
/// [`std::io::Error`] (kind [`TimedOut`](std::io::ErrorKind::TimedOut)) and into `String` (its
/// message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutError {
    after: Duration,
}

impl TimeoutError {
    pub(crate) fn new(after: Duration) -> Self {
        TimeoutError { after }
    }
}

impl TimeoutError {
    /// The hard timeout that passed.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the load took longer than its hard timeout ({:?})",
            self.after
        )
    }
}

impl std::error::Error for TimeoutError {}

/// Its message, for loaders whose errors are strings.
impl From<TimeoutError> for String {
    fn from(error: TimeoutError) -> Self {
        error.to_string()
    }
}

impl From<TimeoutError> for std::io::Error {
    fn from(error: TimeoutError) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, error)
    }
}

/// A return type that can carry a [`TimeoutError`]: `Result<T, E>` with
/// `E: From<TimeoutError>`. What `hard_timeout` needs of a `#[cached]` function.
#[diagnostic::on_unimplemented(
    message = "`hard_timeout` needs a function returning `Result<T, E>` with `E: From<cache_layer::TimeoutError>`; `{Self}` cannot carry the timeout",
    label = "a hard timeout returns `Err(TimeoutError.into())` here",
    note = "return a `Result` whose error implements `From<cache_layer::TimeoutError>` (`std::io::Error` does), or use only `soft_timeout`"
)]
pub trait CarriesTimeout: Sized {
    /// The return value for a load past its hard timeout.
    fn timed_out(error: TimeoutError) -> Self;
}

impl<T, E: From<TimeoutError>> CarriesTimeout for Result<T, E> {
    #[inline]
    fn timed_out(error: TimeoutError) -> Self {
        Err(error.into())
    }
}
