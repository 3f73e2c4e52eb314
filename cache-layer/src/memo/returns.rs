//! What a memoised function returns, and so what is cached: `Result<T, E>` caches `Ok(T)` and
//! never `Err`; `Option<T>` caches `Some(T)`, and `None` only with a `none_ttl`;
//! `Result<Option<T>, E>` caches `Ok(Some(T))`, `Ok(None)` only with a `none_ttl`, and never
//! `Err`; any other type is cached as is.
//!
//! The macro picks the shape from the function's return type at compile time with
//! auto-deref specialisation (see [`Probe`]), so type aliases such as `io::Result<T>` or
//! `type DbResult<T> = Result<T, DbError>` are recognised as results.

use std::marker::PhantomData;

use super::keep::{KeepLocal, KeepShared};

/// What a return value means for the cache.
pub enum Outcome<'r, V> {
    /// Cache this value.
    Value(&'r V),
    /// Cache this value only as a negative entry (`none_ttl`).
    Negative(&'r V),
    /// Do not cache; the call failed.
    Failure,
}

/// How a return type `R` maps to the value that is stored.
pub trait Shape<R>: Copy + Send + Sync + 'static {
    /// What is stored for a successful return.
    type Value;
    /// Where its values are kept: [`KeepShared`] (memory and the shared tier), or
    /// [`KeepLocal`] for a `local` site (see [`Storable`](super::Storable)).
    type Keep;
    /// What a successful return holds, as the function's policies (`ttl_from`, `cache_if`)
    /// see it: `T` of `Result<T, E>`, `Option<T>` and `Result<Option<T>, E>`.
    type Success;
    /// The success inside a stored value (`None` for a negative entry).
    fn success(value: &Self::Value) -> Option<&Self::Success>;
    /// Classifies a return value.
    fn classify(r: &R) -> Outcome<'_, Self::Value>;
    /// Turns a stored value back into the return type.
    fn rebuild(value: Self::Value) -> R;
    /// Whether a writer returning `r` succeeded (for `#[invalidates]`).
    fn succeeded(r: &R) -> bool {
        !matches!(Self::classify(r), Outcome::Failure)
    }
}

/// `Result<T, E>`: `Ok` is cached, `Err` never.
#[derive(Clone, Copy, Debug)]
pub struct ResultShape;
/// `Result<Option<T>, E>`: `Ok(Some)` is cached, `Ok(None)` only as a negative entry, `Err`
/// never.
#[derive(Clone, Copy, Debug)]
pub struct ResultOptionShape;
/// `Option<T>`: `Some` is cached, `None` only as a negative entry.
#[derive(Clone, Copy, Debug)]
pub struct OptionShape;
/// Any other type: cached as is.
#[derive(Clone, Copy, Debug)]
pub struct PlainShape;

impl<T, E> Shape<Result<T, E>> for ResultShape {
    type Value = T;
    type Keep = KeepShared;
    type Success = T;
    fn success(value: &T) -> Option<&T> {
        Some(value)
    }
    fn classify(r: &Result<T, E>) -> Outcome<'_, T> {
        match r {
            Ok(value) => Outcome::Value(value),
            Err(_) => Outcome::Failure,
        }
    }
    fn rebuild(value: T) -> Result<T, E> {
        Ok(value)
    }
}

impl<T, E> Shape<Result<Option<T>, E>> for ResultOptionShape {
    type Value = Option<T>;
    type Keep = KeepShared;
    type Success = T;
    fn success(value: &Option<T>) -> Option<&T> {
        value.as_ref()
    }
    fn classify(r: &Result<Option<T>, E>) -> Outcome<'_, Option<T>> {
        match r {
            Ok(value @ Some(_)) => Outcome::Value(value),
            Ok(value @ None) => Outcome::Negative(value),
            Err(_) => Outcome::Failure,
        }
    }
    fn rebuild(value: Option<T>) -> Result<Option<T>, E> {
        Ok(value)
    }
}

impl<T> Shape<Option<T>> for OptionShape {
    type Value = Option<T>;
    type Keep = KeepShared;
    type Success = T;
    fn success(value: &Option<T>) -> Option<&T> {
        value.as_ref()
    }
    fn classify(r: &Option<T>) -> Outcome<'_, Option<T>> {
        match r {
            Some(_) => Outcome::Value(r),
            None => Outcome::Negative(r),
        }
    }
    fn rebuild(value: Option<T>) -> Option<T> {
        value
    }
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
}

impl<T> Shape<T> for PlainShape {
    type Value = T;
    type Keep = KeepShared;
    type Success = T;
    fn success(value: &T) -> Option<&T> {
        Some(value)
    }
    fn classify(r: &T) -> Outcome<'_, T> {
        Outcome::Value(r)
    }
    fn rebuild(value: T) -> T {
        value
    }
}

/// The shape `S` of a `local` site: the same values and rules, kept in memory only.
#[derive(Clone, Copy, Debug)]
pub struct Local<S>(pub S);

impl<R, S: Shape<R>> Shape<R> for Local<S> {
    type Value = S::Value;
    type Success = S::Success;
    type Keep = KeepLocal;
    #[inline]
    fn success(value: &S::Value) -> Option<&S::Success> {
        S::success(value)
    }
    #[inline]
    fn classify(r: &R) -> Outcome<'_, S::Value> {
        S::classify(r)
    }
    #[inline]
    fn rebuild(value: S::Value) -> R {
        S::rebuild(value)
    }
    #[inline]
    fn succeeded(r: &R) -> bool {
        S::succeeded(r)
    }
}

/// Picks a [`Shape`] for `R`: `(&&&&Probe::<R>::new()).shape()` resolves to
/// [`ViaResultOption`] for results of options, else [`ViaResult`] for results, else
/// [`ViaOption`] for options, else [`ViaPlain`].
pub struct Probe<R>(PhantomData<fn() -> R>);

impl<R> Probe<R> {
    /// A probe for `R`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

/// Picks [`ResultOptionShape`]; highest priority.
pub trait ViaResultOption {
    /// The shape.
    fn shape(&self) -> ResultOptionShape {
        ResultOptionShape
    }
}
impl<T, E> ViaResultOption for &&&Probe<Result<Option<T>, E>> {}

/// Picks [`ResultShape`].
pub trait ViaResult {
    /// The shape.
    fn shape(&self) -> ResultShape {
        ResultShape
    }
}
impl<T, E> ViaResult for &&Probe<Result<T, E>> {}

/// Picks [`OptionShape`].
pub trait ViaOption {
    /// The shape.
    fn shape(&self) -> OptionShape {
        OptionShape
    }
}
impl<T> ViaOption for &Probe<Option<T>> {}

/// Picks [`PlainShape`]; the fallback.
pub trait ViaPlain {
    /// The shape.
    fn shape(&self) -> PlainShape {
        PlainShape
    }
}
impl<T> ViaPlain for Probe<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    type DbResult<T> = Result<T, std::io::Error>;

    #[test]
    #[allow(clippy::needless_borrow)] // the borrows are the point: they rank the impls
    fn probe_picks_the_shape_through_aliases() {
        let _: ResultOptionShape = (&&&&Probe::<DbResult<Option<u32>>>::new()).shape();
        let _: ResultShape = (&&&&Probe::<DbResult<u32>>::new()).shape();
        let _: OptionShape = (&&&&Probe::<Option<u32>>::new()).shape();
        let _: PlainShape = (&&&&Probe::<u32>::new()).shape();
    }

    #[test]
    fn results_cache_ok_only() {
        assert!(matches!(
            ResultShape::classify(&Ok::<u8, ()>(1)),
            Outcome::Value(1)
        ));
        assert!(matches!(
            ResultShape::classify(&Err::<u8, ()>(())),
            Outcome::Failure
        ));
        assert!(matches!(
            OptionShape::classify(&None::<u8>),
            Outcome::Negative(None)
        ));
        assert!(matches!(
            ResultOptionShape::classify(&Ok::<_, ()>(None::<u8>)),
            Outcome::Negative(None)
        ));
        assert!(matches!(
            ResultOptionShape::classify(&Ok::<_, ()>(Some(1u8))),
            Outcome::Value(Some(1))
        ));
        assert!(matches!(
            ResultOptionShape::classify(&Err::<Option<u8>, ()>(())),
            Outcome::Failure
        ));
    }
}
