//! Keys are injective: different arguments never share an entry, whatever they contain.
//! Each `#[cached]` function here returns a rendering of its own arguments, so a call that is
//! answered from another argument list's entry shows up as a wrong answer.

use std::sync::LazyLock;

use cache_layer::{cached, Cache, KeyArg, KeyBuf};
use proptest::prelude::*;

static CACHE: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .memory_budget(256 << 20)
        .build()
        .expect("valid configuration")
});

mod collisions {
    use super::*;

    #[cached(ttl = "1h", key = "org/<org>/u/<user>", cache = CACHE)]
    async fn member(org: &str, user: &str) -> String {
        format!("{org}|{user}")
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn nested(groups: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
        groups
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn names(names: Vec<String>) -> Vec<String> {
        names
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn maybe(value: Option<Option<u32>>) -> Vec<Option<Option<u32>>> {
        // Wrapped: an `Option` return would not cache `None` at all.
        vec![value]
    }

    #[cached(ttl = "1h", key = "pair:<pair>", cache = CACHE)]
    async fn pair(pair: (String, String)) -> (String, String) {
        pair
    }

    #[tokio::test]
    async fn separators_inside_string_values_do_not_forge_the_template() {
        assert_eq!(member("a/u/b", "c").await, "a/u/b|c");
        assert_eq!(member("a", "b/u/c").await, "a|b/u/c");
    }

    #[tokio::test]
    async fn nested_sequences_keep_their_boundaries() {
        let first = vec![vec![1, 2], vec![3]];
        let second = vec![vec![1], vec![2, 3]];
        assert_eq!(nested(first.clone()).await, first);
        assert_eq!(nested(second.clone()).await, second);
        assert_eq!(nested(vec![]).await, Vec::<Vec<u32>>::new());
        assert_eq!(nested(vec![vec![]]).await, vec![Vec::<u32>::new()]);
    }

    #[tokio::test]
    async fn an_empty_list_is_not_a_list_of_one_empty_string() {
        assert_eq!(names(vec![]).await, Vec::<String>::new());
        assert_eq!(names(vec![String::new()]).await, vec![String::new()]);
        assert_eq!(
            names(vec![String::new(), String::new()]).await,
            vec![String::new(), String::new()]
        );
        assert_eq!(names(vec!["a,b".into()]).await, vec!["a,b".to_owned()]);
        assert_eq!(
            names(vec!["a".into(), "b".into()]).await,
            vec!["a".to_owned(), "b".to_owned()]
        );
    }

    #[tokio::test]
    async fn some_none_is_not_none() {
        assert_eq!(maybe(None).await, [None]);
        assert_eq!(maybe(Some(None)).await, [Some(None)]);
        assert_eq!(maybe(Some(Some(1))).await, [Some(Some(1))]);
    }

    #[tokio::test]
    async fn tuple_fields_keep_their_boundaries() {
        let a = ("a,b".to_owned(), "c".to_owned());
        let b = ("a".to_owned(), "b,c".to_owned());
        assert_eq!(pair(a.clone()).await, a);
        assert_eq!(pair(b.clone()).await, b);
    }
}

/// The key of `value` alone.
fn key_of<T: KeyArg + ?Sized>(value: &T) -> String {
    let mut out = KeyBuf::new();
    value.write_key(&mut out);
    out.into_string()
}

/// Asserts that distinct values render distinct keys.
fn injective<T: KeyArg + PartialEq + std::fmt::Debug>(a: &T, b: &T) -> Result<(), TestCaseError> {
    if a != b {
        prop_assert_ne!(key_of(a), key_of(b), "{:?} and {:?}", a, b);
    } else {
        prop_assert_eq!(key_of(a), key_of(b));
    }
    Ok(())
}

/// Strings drawn mostly from the characters keys are built with, so collisions are likely
/// to be found if the encoding allows them.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c:,/%\\[\\]()@ NS|-]{0,6}",
        any::<String>(),
        Just(String::new()),
        Just("%N".to_owned()),
        Just("%S".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn strings(a in text(), b in text()) {
        injective(&a, &b)?;
    }

    #[test]
    fn chars(a in any::<char>(), b in any::<char>()) {
        injective(&a, &b)?;
    }

    #[test]
    fn integers(a in any::<i64>(), b in any::<i64>(), c in any::<u128>(), d in any::<u128>()) {
        injective(&a, &b)?;
        injective(&c, &d)?;
        injective(&(a as i128), &(b as i128))?;
    }

    #[test]
    fn booleans_and_options_of_them(a in any::<Option<bool>>(), b in any::<Option<bool>>()) {
        injective(&a, &b)?;
    }

    #[test]
    fn sequences_of_strings(a in prop::collection::vec(text(), 0..4), b in prop::collection::vec(text(), 0..4)) {
        injective(&a, &b)?;
    }

    #[test]
    fn nested_sequences(
        a in prop::collection::vec(prop::collection::vec(0u8..4, 0..3), 0..4),
        b in prop::collection::vec(prop::collection::vec(0u8..4, 0..3), 0..4),
    ) {
        injective(&a, &b)?;
    }

    #[test]
    fn nested_options(
        a in prop::option::of(prop::option::of(prop::option::of(text()))),
        b in prop::option::of(prop::option::of(prop::option::of(text()))),
    ) {
        injective(&a, &b)?;
    }

    #[test]
    fn options_of_sequences_and_sequences_of_options(
        a in prop::option::of(prop::collection::vec(prop::option::of(text()), 0..3)),
        b in prop::option::of(prop::collection::vec(prop::option::of(text()), 0..3)),
    ) {
        injective(&a, &b)?;
    }

    #[test]
    fn tuples(
        a in (text(), prop::option::of(0u8..3), prop::collection::vec(text(), 0..3)),
        b in (text(), prop::option::of(0u8..3), prop::collection::vec(text(), 0..3)),
    ) {
        injective(&a, &b)?;
        injective(&(a.0.clone(), a.1), &(b.0.clone(), b.1))?;
    }
}

/// Templates: every function below returns its arguments, so two argument lists that shared
/// a key would make the second call return the first one's arguments.
mod templates {
    use super::*;

    #[cached(ttl = "1h", key = "t:<a>:<b>", cache = CACHE)]
    async fn colon(a: String, b: String) -> (String, String) {
        (a, b)
    }

    #[cached(ttl = "1h", key = "<a>/u/<b>", cache = CACHE)]
    async fn slash(a: Option<String>, b: Vec<String>) -> (Option<String>, Vec<String>) {
        (a, b)
    }

    #[cached(ttl = "1h", key = "x-<a>:.<b>|<c>%:", cache = CACHE)]
    async fn mixed(a: i32, b: String, c: Option<Vec<u8>>) -> (i32, String, Option<Vec<u8>>) {
        (a, b, c)
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn default_key(
        a: String,
        b: Option<String>,
        c: Vec<u8>,
    ) -> (String, Option<String>, Vec<u8>) {
        (a, b, c)
    }

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        });
        &RUNTIME
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn two_placeholders_around_a_separator(a in text(), b in text()) {
            let got = runtime().block_on(colon(a.clone(), b.clone()));
            prop_assert_eq!(got, (a, b));
        }

        #[test]
        fn separators_that_values_contain(a in prop::option::of(text()), b in prop::collection::vec(text(), 0..3)) {
            let got = runtime().block_on(slash(a.clone(), b.clone()));
            prop_assert_eq!(got, (a, b));
        }

        #[test]
        fn literals_with_several_reserved_characters(
            a in any::<i32>(),
            b in text(),
            c in prop::option::of(prop::collection::vec(0u8..3, 0..3)),
        ) {
            let got = runtime().block_on(mixed(a, b.clone(), c.clone()));
            prop_assert_eq!(got, (a, b, c));
        }

        #[test]
        fn the_default_key(a in text(), b in prop::option::of(text()), c in prop::collection::vec(0u8..3, 0..3)) {
            let got = runtime().block_on(default_key(a.clone(), b.clone(), c.clone()));
            prop_assert_eq!(got, (a, b, c));
        }
    }
}

/// `name` labels a site in metrics and traces; it is not the key's namespace.
mod namespaces {
    use super::*;

    #[cached(ttl = "1h", name = "db", cache = CACHE)]
    async fn users(id: u32) -> String {
        format!("user {id}")
    }

    #[cached(ttl = "1h", name = "db", cache = CACHE)]
    async fn orders(id: u32) -> String {
        format!("order {id}")
    }

    #[tokio::test]
    async fn two_functions_with_one_name_keep_their_own_entries() {
        assert_eq!(users(1).await, "user 1");
        assert_eq!(orders(1).await, "order 1");
        assert_eq!(users(1).await, "user 1");
    }

    static VERSIONED: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());

    #[cached(ttl = "1h", key = "settings:<tenant>", cache = VERSIONED)]
    async fn settings_v1(tenant: u32) -> String {
        format!("v1 {tenant}")
    }

    #[cached(ttl = "1h", key = "settings:<tenant>", version = 2, cache = VERSIONED)]
    async fn settings_v2(tenant: u32) -> String {
        format!("v2 {tenant}")
    }

    #[tokio::test]
    async fn a_version_bump_does_not_read_the_old_entries_and_invalidation_still_reaches_it() {
        // The same key template, as an old and a new deploy of one function would have.
        assert_eq!(settings_v1(7).await, "v1 7");
        assert_eq!(settings_v2(7).await, "v2 7");
        assert_eq!(settings_v1(7).await, "v1 7");
        let loads = VERSIONED.stats().loads;
        assert_eq!(settings_v2(7).await, "v2 7");
        assert_eq!(
            VERSIONED.stats().loads,
            loads,
            "the versioned entry is a hit"
        );
        VERSIONED.invalidate("settings:7").await;
        assert_eq!(settings_v2(7).await, "v2 7");
        assert_eq!(
            VERSIONED.stats().loads,
            loads + 1,
            "invalidating the unversioned key drops the versioned entry"
        );
    }
}

/// An argument whose type the signature leaves open (a generic, `impl KeyArg`, `dyn KeyArg`)
/// keys by its type too: two id types that render the same text keep their own entries. Each
/// function answers with its argument's kind and how many times a body ran, so a call
/// answered from another type's entry shows the other kind.
mod open_types {
    use super::*;
    use cache_layer::Key;
    use std::sync::atomic::{AtomicU32, Ordering};

    static RUNS: AtomicU32 = AtomicU32::new(0);

    fn run() -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst)
    }

    /// An id that knows what it identifies.
    trait Entity: KeyArg + Send + Sync {
        fn kind(&self) -> &'static str;
    }

    struct UserId(u64);
    struct OrgId(u64);

    impl KeyArg for UserId {
        fn write_key(&self, out: &mut KeyBuf) {
            self.0.write_key(out);
        }
    }

    /// With a fixed name for its type, as the `KeyArg` docs show.
    impl KeyArg for OrgId {
        fn write_key(&self, out: &mut KeyBuf) {
            self.0.write_key(out);
        }

        fn write_key_type(&self, out: &mut KeyBuf) {
            out.push_str("test::OrgId");
        }
    }

    impl Entity for UserId {
        fn kind(&self) -> &'static str {
            "user"
        }
    }

    impl Entity for OrgId {
        fn kind(&self) -> &'static str {
            "org"
        }
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn generic<T: Entity>(id: T) -> (String, u32) {
        (id.kind().to_owned(), run())
    }

    #[cached(ttl = "1h", key = "open:<id>", cache = CACHE)]
    async fn templated<T: Entity>(id: &T) -> (String, u32) {
        (id.kind().to_owned(), run())
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn impl_trait(id: impl Entity) -> (String, u32) {
        (id.kind().to_owned(), run())
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn dynamic(id: &dyn Entity) -> (String, u32) {
        (id.kind().to_owned(), run())
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn several(ids: Vec<&dyn Entity>) -> (String, u32) {
        let kinds: Vec<&str> = ids.iter().map(|id| id.kind()).collect();
        (kinds.join(","), run())
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn concrete(id: &UserId, name: &str) -> (String, u32) {
        (format!("{}:{name}", id.0), run())
    }

    #[cached(ttl = "1h", key = "concrete:<id>:<name>", cache = CACHE)]
    async fn concrete_template(id: u64, name: Option<&str>) -> (String, u32) {
        (format!("{id}:{name:?}"), run())
    }

    fn kind((kind, _run): (String, u32)) -> String {
        kind
    }

    #[tokio::test]
    async fn a_generic_argument_keys_by_its_type() {
        assert_eq!(kind(generic(UserId(7)).await), "user");
        assert_eq!(kind(generic(OrgId(7)).await), "org");
        assert_eq!(kind(generic(UserId(7)).await), "user");
        assert_eq!(kind(templated(&UserId(7)).await), "user");
        assert_eq!(kind(templated(&OrgId(7)).await), "org");
    }

    #[tokio::test]
    async fn an_impl_trait_argument_keys_by_its_type() {
        assert_eq!(kind(impl_trait(UserId(8)).await), "user");
        assert_eq!(kind(impl_trait(OrgId(8)).await), "org");
    }

    #[tokio::test]
    async fn a_dyn_argument_keys_by_the_type_behind_it() {
        assert_eq!(kind(dynamic(&UserId(9)).await), "user");
        assert_eq!(kind(dynamic(&OrgId(9)).await), "org");
        assert_eq!(kind(dynamic(&UserId(9)).await), "user");
        // `[1,2]` of a user then an org, and of an org then a user.
        assert_eq!(kind(several(vec![&UserId(1), &OrgId(2)]).await), "user,org");
        assert_eq!(kind(several(vec![&OrgId(1), &UserId(2)]).await), "org,user");
        assert_eq!(kind(several(vec![&OrgId(1), &OrgId(2)]).await), "org,org");
    }

    #[tokio::test]
    async fn the_type_is_named_after_the_value_and_the_key_as_written_still_invalidates() {
        let (_, first) = generic(OrgId(10)).await;
        assert_eq!(generic(OrgId(10)).await.1, first, "a hit");
        // The documented form: the value, `%T`, the type's name escaped as a string is.
        let typed = concat!(module_path!(), "::generic:10%Ttest%3A%3AOrgId");
        CACHE.invalidate(typed).await;
        let (_, second) = generic(OrgId(10)).await;
        assert_ne!(
            second, first,
            "invalidating the typed key dropped the entry"
        );
        let (_, user) = generic(UserId(10)).await;
        // The key without type names is a tag of every type's entry.
        CACHE
            .invalidate(concat!(module_path!(), "::generic:10"))
            .await;
        assert_ne!(generic(OrgId(10)).await.1, second);
        assert_ne!(generic(UserId(10)).await.1, user);
        let (_, templated_run) = templated(&OrgId(10)).await;
        CACHE.invalidate("open:10").await;
        assert_ne!(templated(&OrgId(10)).await.1, templated_run);
    }

    /// Arguments whose type the signature fixes keep the documented keys: the function's path
    /// and each argument after a `:`, or the template.
    #[tokio::test]
    async fn keys_of_fixed_types_are_unchanged() {
        let value = concrete(&UserId(7), "a/b").await;
        let key = Key::new(concat!(module_path!(), "::concrete"))
            .part(7u64)
            .part("a/b");
        assert_eq!(key.as_str(), concat!(module_path!(), "::concrete:7:a%2Fb"));
        assert_eq!(CACHE.get::<(String, u32)>(&key).await, Some(value));
        let value = concrete_template(7, None).await;
        let key = Key::new("concrete").part(7u64).part(None::<&str>);
        assert_eq!(key.as_str(), "concrete:7:%N");
        assert_eq!(CACHE.get::<(String, u32)>(&key).await, Some(value));
    }
}
