//! `#[derive(KeyArg)]` on every shape it accepts: generics (type, const, lifetime, with
//! where clauses and `?Sized`), raw identifiers, enums without variants, and types in
//! functions. Generated code names only `::cache_layer` paths, so none of these imports
//! matter.

use std::marker::PhantomData;

use cache_layer::{KeyArg, KeyBuf};

#[derive(KeyArg)]
struct Borrowed<'a, T: ?Sized>(&'a T);

#[derive(KeyArg)]
struct Array<T, const N: usize>
where
    T: Clone,
{
    items: [T; N],
}

#[derive(KeyArg)]
struct Typed<T: ?Sized> {
    raw: u64,
    _marker: PhantomData<T>,
}

#[derive(KeyArg)]
enum r#Never {}

#[derive(KeyArg)]
enum Either<L, R> {
    r#Left(L),
    Right { value: R },
    Neither,
}

#[derive(KeyArg)]
struct Unit;

fn key<T: KeyArg + ?Sized>(value: &T) -> (String, String) {
    let mut out = KeyBuf::new();
    value.write_key(&mut out);
    let mut name = KeyBuf::new();
    value.write_key_type(&mut name);
    (out.into_string(), name.into_string())
}

fn main() {
    #[derive(KeyArg)]
    struct Local(u8);

    assert_eq!(key(&Borrowed("a:b")), ("a%3Ab".into(), concat!(module_path!(), "::Borrowed<str>").into()));
    assert_eq!(key(&Array { items: [1u8, 2] }).0, "[1,2]");
    assert_eq!(key(&Array { items: [1u8, 2] }).1, concat!(module_path!(), "::Array<u8,2>"));
    let typed = Typed::<dyn Send> { raw: 7, _marker: PhantomData };
    assert_eq!(key(&typed), ("7".into(), concat!(module_path!(), "::Typed<dyn core::marker::Send>").into()));
    assert_eq!(key(&Either::<u8, u8>::Left(1)).0, "Left(1)");
    assert_eq!(key(&Either::<u8, u8>::Right { value: 1 }).0, "Right(1)");
    assert_eq!(key(&Either::<u8, u8>::Neither).0, "Neither");
    assert_eq!(key(&Unit), ("()".into(), concat!(module_path!(), "::Unit").into()));
    assert_eq!(key(&Local(3)), ("3".into(), concat!(module_path!(), "::Local").into()));
    let _ = |never: &Never| key(never);
}
