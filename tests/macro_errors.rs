//! Every misuse of the macros is a compile error pointing at the offending token; so is a
//! `CacheLayer` setting that cannot be valid (`max_variants(0)`).

#[test]
fn macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
