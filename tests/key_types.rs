//! The keys users have: `Uuid` ids, chrono and time dates and times (features `uuid`,
//! `chrono`, `time`), and their own types with `#[derive(KeyArg)]`. Each function answers
//! with a rendering of its arguments, so a call answered from another argument list's entry
//! shows up as a wrong answer; entries are found by the key strings the docs give.

use std::sync::LazyLock;

use cache_layer::{cached, Cache, Key, KeyArg, KeyBuf};

/// A cache of its own for each test, so that load counts are the test's.
fn cache() -> Cache {
    Cache::builder().build().expect("valid configuration")
}

/// `value`'s key form alone.
fn key_of<T: KeyArg + ?Sized>(value: &T) -> String {
    let mut out = KeyBuf::new();
    value.write_key(&mut out);
    out.into_string()
}

mod ids {
    use super::*;
    use uuid::Uuid;

    static CACHE: LazyLock<Cache> = LazyLock::new(cache);

    #[cached(ttl = "1h", key = "user:<id>", cache = CACHE)]
    async fn user(id: Uuid) -> String {
        format!("user {id}")
    }

    #[tokio::test]
    async fn two_uuids_are_two_entries_under_their_hyphenated_text() {
        let ada = Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8);
        let grace = Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c9);
        assert_eq!(user(ada).await, format!("user {ada}"));
        assert_eq!(user(grace).await, format!("user {grace}"));
        assert_eq!(user(ada).await, format!("user {ada}"));
        assert_eq!(CACHE.stats().loads, 2);
        // The documented rendering: hyphenated, lowercase, nothing escaped.
        let key = Key::new("user:67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(CACHE.get::<String>(&key).await, Some(format!("user {ada}")));
        CACHE.invalidate(key.as_str()).await;
        assert_eq!(user(ada).await, format!("user {ada}"));
        assert_eq!(
            CACHE.stats().loads,
            3,
            "invalidating the documented key reloads"
        );
        assert_eq!(user(grace).await, format!("user {grace}"));
        assert_eq!(
            CACHE.stats().loads,
            3,
            "the other id's entry is still there"
        );
    }
}

mod chrono_keys {
    use super::*;
    use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};

    static REPORTS: LazyLock<Cache> = LazyLock::new(cache);
    static CLOCKS: LazyLock<Cache> = LazyLock::new(cache);

    #[cached(ttl = "1h", key = "report:<day>:<at>", cache = REPORTS)]
    async fn report(day: NaiveDate, at: DateTime<Utc>) -> String {
        format!("{day} {at}")
    }

    #[cached(ttl = "1h", key = "clock:<at>", cache = CLOCKS)]
    async fn clock(at: DateTime<FixedOffset>) -> String {
        // Depends on the offset: the local hour.
        format!("{:02}h", at.hour())
    }

    #[tokio::test]
    async fn dates_and_instants_key_their_entries_in_iso_8601() {
        let day = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let noon = Utc.with_ymd_and_hms(2024, 3, 1, 12, 30, 5).unwrap();
        let later = Utc.with_ymd_and_hms(2024, 3, 1, 12, 30, 6).unwrap();
        assert_eq!(report(day, noon).await, format!("{day} {noon}"));
        assert_eq!(report(day, later).await, format!("{day} {later}"));
        let next = day.succ_opt().unwrap();
        assert_eq!(report(next, noon).await, format!("{next} {noon}"));
        let loads = REPORTS.stats().loads;
        assert_eq!(report(day, noon).await, format!("{day} {noon}"));
        assert_eq!(REPORTS.stats().loads, loads, "a hit");
        REPORTS
            .invalidate("report:2024-03-01:2024-03-01T12%3A30%3A05Z")
            .await;
        assert_eq!(report(day, noon).await, format!("{day} {noon}"));
        assert_eq!(
            REPORTS.stats().loads,
            loads + 1,
            "the documented key was the entry's"
        );
    }

    #[tokio::test]
    async fn one_instant_in_two_offsets_is_two_entries() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let paris = FixedOffset::east_opt(3600).unwrap();
        let instant = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(instant.with_timezone(&utc), instant.with_timezone(&paris));
        assert_eq!(clock(instant.with_timezone(&utc)).await, "12h");
        assert_eq!(clock(instant.with_timezone(&paris)).await, "13h");
        CLOCKS
            .invalidate("clock:2024-03-01T13%3A00%3A00%2B01%3A00")
            .await;
        let loads = CLOCKS.stats().loads;
        assert_eq!(clock(instant.with_timezone(&paris)).await, "13h");
        assert_eq!(CLOCKS.stats().loads, loads + 1);
    }
}

mod time_keys {
    use super::*;
    use time::{Date, Month, OffsetDateTime, Time, UtcOffset};

    static CACHE: LazyLock<Cache> = LazyLock::new(cache);

    #[cached(ttl = "1h", key = "slot:<day>:<at>", cache = CACHE)]
    async fn slot(day: Date, at: OffsetDateTime) -> String {
        format!("{day} {}h", at.hour())
    }

    #[tokio::test]
    async fn dates_and_date_times_key_their_entries_in_iso_8601() {
        let day = Date::from_calendar_date(2024, Month::March, 1).unwrap();
        let noon = day
            .with_time(Time::from_hms_milli(12, 0, 0, 500).unwrap())
            .assume_utc();
        let paris = noon.to_offset(UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(slot(day, noon).await, "2024-03-01 12h");
        assert_eq!(slot(day, paris).await, "2024-03-01 13h");
        assert_eq!(
            CACHE.stats().loads,
            2,
            "one instant in two offsets: two entries"
        );
        CACHE
            .invalidate("slot:2024-03-01:2024-03-01T12%3A00%3A00.5%2B00%3A00")
            .await;
        assert_eq!(slot(day, noon).await, "2024-03-01 12h");
        assert_eq!(CACHE.stats().loads, 3, "the documented key was the entry's");
    }
}

/// `#[derive(KeyArg)]` types as arguments, in templates, default keys and open arguments.
mod derived {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::marker::PhantomData;
    use std::sync::atomic::{AtomicU32, Ordering};

    static CACHE: LazyLock<Cache> = LazyLock::new(cache);
    static POSTS: LazyLock<Cache> = LazyLock::new(cache);
    static RUNS: AtomicU32 = AtomicU32::new(0);

    fn run() -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst)
    }

    #[derive(KeyArg, Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct UserId(u64);

    #[derive(KeyArg, Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct OrgId(u64);

    #[derive(KeyArg, Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Page {
        cursor: Option<String>,
        size: u32,
    }

    #[derive(KeyArg, Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Filter {
        All,
        Tag(String),
        Range { from: u32, to: u32 },
    }

    /// A typed id: the marker takes no part in the value, only in the type.
    #[derive(KeyArg)]
    struct Id<T> {
        raw: u64,
        _entity: PhantomData<T>,
    }

    struct User;
    struct Org;

    #[cached(ttl = "1h", key = "posts:<user>:<page>:<filter>", cache = POSTS)]
    async fn posts(user: UserId, page: Page, filter: Filter) -> (UserId, Page, Filter) {
        (user, page, filter)
    }

    #[cached(ttl = "1h", cache = POSTS)]
    async fn by_default(filter: &Filter) -> Filter {
        filter.clone()
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn open(id: impl KeyArg + Send + Sync + std::fmt::Debug) -> (String, u32) {
        (format!("{id:?}"), run())
    }

    #[cached(ttl = "1h", cache = CACHE)]
    async fn typed<T: Send + Sync + 'static>(id: Id<T>) -> (u64, String, u32) {
        (id.raw, std::any::type_name::<T>().to_owned(), run())
    }

    #[tokio::test]
    async fn derived_structs_and_enums_key_by_their_fields() {
        let page = |cursor: Option<&str>, size| Page {
            cursor: cursor.map(str::to_owned),
            size,
        };
        let calls = [
            (UserId(7), page(None, 10), Filter::All),
            (UserId(7), page(Some("a,b"), 10), Filter::All),
            (UserId(7), page(Some("a"), 10), Filter::Tag("b".into())),
            (UserId(7), page(None, 10), Filter::Range { from: 1, to: 5 }),
            (UserId(7), page(None, 10), Filter::Range { from: 15, to: 0 }),
            (UserId(8), page(None, 10), Filter::All),
        ];
        for _ in 0..2 {
            for (user, page, filter) in calls.clone() {
                let expected = (user.clone(), page.clone(), filter.clone());
                assert_eq!(posts(user, page, filter).await, expected);
            }
        }
        let loads = POSTS.stats().loads;
        // The documented rendering: a newtype as its field, a struct as a tuple, a variant
        // as its name then its fields.
        POSTS.invalidate("posts:7:(%N,10):Range(1,5)").await;
        let (user, page, filter) = calls[3].clone();
        posts(user, page, filter).await;
        assert_eq!(POSTS.stats().loads, loads + 1);
        assert_eq!(
            by_default(&Filter::Tag("All".into())).await,
            Filter::Tag("All".into())
        );
        assert_eq!(by_default(&Filter::All).await, Filter::All);
        let key = Key::new(concat!(module_path!(), "::by_default")).part(Filter::All);
        assert_eq!(key.as_str(), concat!(module_path!(), "::by_default:All"));
        assert_eq!(POSTS.get::<Filter>(&key).await, Some(Filter::All));
    }

    #[tokio::test]
    async fn two_derived_newtypes_over_one_value_never_share_an_entry() {
        assert_eq!(key_of(&UserId(7)), key_of(&OrgId(7)), "both render 7");
        let (user, user_run) = open(UserId(7)).await;
        let (org, org_run) = open(OrgId(7)).await;
        assert_eq!(user, "UserId(7)");
        assert_eq!(org, "OrgId(7)");
        assert_ne!(user_run, org_run);
        assert_eq!(open(UserId(7)).await, (user, user_run), "a hit");
        assert_eq!(open(OrgId(7)).await, (org, org_run), "a hit");
        // The type's name is its module path and name, fixed by the source.
        let typed_key = concat!(
            module_path!(),
            "::open:7%T",
            "key_types%3A%3Aderived%3A%3AOrgId"
        );
        CACHE.invalidate(typed_key).await;
        assert_ne!(
            open(OrgId(7)).await.1,
            org_run,
            "the documented key was the entry's"
        );
        assert_eq!(open(UserId(7)).await.1, user_run);
    }

    #[tokio::test]
    async fn typed_ids_of_two_entities_never_share_an_entry() {
        let user = Id::<User> {
            raw: 7,
            _entity: PhantomData,
        };
        let org = Id::<Org> {
            raw: 7,
            _entity: PhantomData,
        };
        assert_eq!(key_of(&user), "7", "the marker takes no part in the value");
        let (_, user_type, user_run) = typed(user).await;
        let (_, org_type, org_run) = typed(org).await;
        assert!(user_type.ends_with("User") && org_type.ends_with("Org"));
        assert_ne!(user_run, org_run);
        let again = typed(Id::<User> {
            raw: 7,
            _entity: PhantomData,
        })
        .await;
        assert_eq!(again.2, user_run, "a hit");
    }
}

/// No two values of a derived struct or enum render the same key, over a space made to
/// collide: variant names that prefix each other or look like markers, empty and reserved
/// text, nested options and sequences of derived values.
mod injective {
    use super::*;
    use proptest::prelude::*;

    #[derive(KeyArg, Clone, Debug, PartialEq)]
    enum Shape {
        A,
        Ab,
        N,
        S(Option<u8>),
        B(u8),
        Bc(String),
        Empty(),
        Pair(String, String),
        Named { x: Option<String>, y: Vec<u8> },
    }

    #[derive(KeyArg, Clone, Debug, PartialEq)]
    struct Outer {
        name: String,
        shape: Shape,
        more: Vec<Option<Shape>>,
    }

    #[derive(KeyArg, Clone, Debug, PartialEq)]
    struct Wrap(Option<Shape>);

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ABNS(),%\\[\\]]{0,4}",
            Just(String::new()),
            Just("%N".to_owned()),
        ]
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::A),
            Just(Shape::Ab),
            Just(Shape::N),
            Just(Shape::Empty()),
            prop::option::of(0u8..3).prop_map(Shape::S),
            (0u8..3).prop_map(Shape::B),
            text().prop_map(Shape::Bc),
            (text(), text()).prop_map(|(a, b)| Shape::Pair(a, b)),
            (
                prop::option::of(text()),
                prop::collection::vec(0u8..3, 0..3)
            )
                .prop_map(|(x, y)| Shape::Named { x, y }),
        ]
    }

    fn outer() -> impl Strategy<Value = Outer> {
        (
            text(),
            shape(),
            prop::collection::vec(prop::option::of(shape()), 0..3),
        )
            .prop_map(|(name, shape, more)| Outer { name, shape, more })
    }

    fn injective<T: KeyArg + PartialEq + std::fmt::Debug>(
        a: &T,
        b: &T,
    ) -> Result<(), TestCaseError> {
        if a == b {
            prop_assert_eq!(key_of(a), key_of(b));
        } else {
            prop_assert_ne!(key_of(a), key_of(b), "{:?} and {:?}", a, b);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn enums(a in shape(), b in shape()) {
            injective(&a, &b)?;
            injective(&Wrap(Some(a.clone())), &Wrap(Some(b.clone())))?;
            injective(&Wrap(Some(a)), &Wrap(None))?;
        }

        #[test]
        fn structs_of_enums(a in outer(), b in outer()) {
            injective(&a, &b)?;
            injective(&vec![a.clone(), b.clone()], &vec![b, a])?;
        }
    }

    #[test]
    fn renderings_are_the_documented_ones() {
        assert_eq!(key_of(&Shape::A), "A");
        assert_eq!(key_of(&Shape::S(None)), "S(%N)");
        assert_eq!(key_of(&Shape::Empty()), "Empty()");
        assert_eq!(
            key_of(&Shape::Pair("a,b".into(), String::new())),
            "Pair(a%2Cb,)"
        );
        let named = Shape::Named {
            x: Some("(".into()),
            y: vec![1, 2],
        };
        assert_eq!(key_of(&named), "Named(%28,[1,2])");
        assert_eq!(key_of(&Wrap(None)), "%N");
        let outer = Outer {
            name: "o".into(),
            shape: Shape::Ab,
            more: vec![None, Some(Shape::N)],
        };
        assert_eq!(key_of(&outer), "(o,Ab,[%N,N])");
    }
}
