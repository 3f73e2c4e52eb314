//! The catalog's database: SQLite (compiled in by `rusqlite`'s `bundled` feature) in a
//! temporary file, seeded on start, read through a small pool of connections on tokio's
//! blocking threads. Every statement is counted, so the demo and the tests can see what the
//! caches saved.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};

/// How much data the seed writes: enough that the featured-courses query is a real join and
/// aggregate over tens of thousands of rows (a few milliseconds), not a `sleep`.
pub(crate) const USERS: u64 = 5_000;
pub(crate) const COURSES: u64 = 2_000;
pub(crate) const PRODUCTS: u64 = 3_000;
pub(crate) const TENANTS: u64 = 20;
const ENROLMENTS_PER_USER: u64 = 8;

/// A failed database call. Never cached: `#[cached]` stores `Ok` values only.
#[derive(Debug)]
pub(crate) enum DbError {
    /// No row with that id.
    NotFound,
    /// SQLite said no, or the blocking task died.
    Sqlite(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::NotFound => f.write_str("not found"),
            DbError::Sqlite(e) => write!(f, "database error: {e}"),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e.to_string())
    }
}

/// A row of the featured-courses ranking.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FeaturedCourse {
    pub(crate) id: u64,
    pub(crate) title: String,
    pub(crate) instructor: String,
    pub(crate) students: u64,
    pub(crate) rating: f64,
}

/// A user's profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) tenant: String,
    pub(crate) enrolments: u64,
    pub(crate) courses: Vec<String>,
}

/// A product in the shop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Product {
    pub(crate) id: u64,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) price_cents: u64,
    pub(crate) course: Option<String>,
}

/// One tenant's settings.
pub(crate) type Settings = BTreeMap<String, String>;

/// A pool of SQLite connections to one database file, with a query counter.
#[derive(Clone)]
pub(crate) struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    /// One slot per connection; a task holding a permit always finds one unlocked.
    slots: Vec<Arc<Mutex<Connection>>>,
    permits: Arc<Semaphore>,
    queries: AtomicU64,
    path: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the connections first: the last close checkpoints and removes the WAL files.
        self.slots.clear();
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Db {
    /// Creates a fresh database in a temporary file, seeds it, and opens `connections`
    /// connections to it. Runs on a blocking thread: seeding takes a few hundred ms.
    pub(crate) async fn open(connections: usize) -> Result<Db, DbError> {
        tokio::task::spawn_blocking(move || Db::open_blocking(connections.max(1)))
            .await
            .map_err(|e| DbError::Sqlite(e.to_string()))?
    }

    fn open_blocking(connections: usize) -> Result<Db, DbError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // A file rather than `:memory:`: WAL mode lets the pool's connections read in
        // parallel, which SQLite's shared in-memory cache would serialise.
        let path = std::env::temp_dir().join(format!(
            "cache-layer-catalog-{}-{}.sqlite",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let mut first = Connection::open(&path)?;
        first.pragma_update(None, "journal_mode", "WAL")?;
        seed(&mut first)?;
        let mut slots = vec![Arc::new(Mutex::new(first))];
        while slots.len() < connections {
            let conn = Connection::open(&path)?;
            slots.push(Arc::new(Mutex::new(conn)));
        }
        for slot in &slots {
            let conn = slot.try_lock().expect("no one else has the slots yet");
            // Writers wait for each other instead of failing with SQLITE_BUSY.
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(Db {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(slots.len())),
                slots,
                queries: AtomicU64::new(0),
                path,
            }),
        })
    }

    /// How many statements the application has run (the seed is not counted).
    pub(crate) fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Runs `query` on a free connection on a blocking thread: SQLite calls block, and would
    /// otherwise stall the async workers that serve every other request.
    async fn run<T, F>(&self, label: &'static str, query: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| DbError::Sqlite(e.to_string()))?;
        let conn = self
            .inner
            .slots
            .iter()
            .find_map(|slot| Arc::clone(slot).try_lock_owned().ok())
            .expect("a permit guarantees a free connection");
        self.inner.queries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("catalog_db_queries_total", "query" => label).increment(1);
        let started = Instant::now();
        // The permit goes with the connection, and is released after it: if this future is
        // dropped (the client went away), the query still runs to its end on the blocking
        // thread, and no other caller may count on its connection until then.
        let result = tokio::task::spawn_blocking(move || {
            let result = query(&conn);
            drop(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|e| DbError::Sqlite(e.to_string()))?;
        metrics::histogram!("catalog_db_query_seconds", "query" => label)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// The featured-courses ranking: every published course's students and mean rating,
    /// joined with its instructor, ranked. The expensive read of the service.
    pub(crate) async fn featured_courses(&self) -> Result<Vec<FeaturedCourse>, DbError> {
        self.run("featured_courses", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.id, c.title, u.name, COUNT(*) AS students, AVG(e.rating) AS rating
                 FROM courses c
                 JOIN enrolments e ON e.course_id = c.id
                 JOIN users u ON u.id = c.instructor_id
                 WHERE c.published = 1
                 GROUP BY c.id
                 HAVING COUNT(e.rating) >= 3
                 ORDER BY AVG(e.rating) * COUNT(*) DESC, c.id
                 LIMIT 12",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(FeaturedCourse {
                    id: row.get(0)?,
                    title: row.get(1)?,
                    instructor: row.get(2)?,
                    students: row.get(3)?,
                    rating: (row.get::<_, f64>(4)? * 100.0).round() / 100.0,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// A user's profile with their enrolment count and latest courses.
    pub(crate) async fn user(&self, id: u64) -> Result<User, DbError> {
        self.run("user", move |conn| {
            let head = conn
                .prepare_cached(
                    "SELECT u.name, u.tenant,
                            (SELECT COUNT(*) FROM enrolments e WHERE e.user_id = u.id)
                     FROM users u WHERE u.id = ?1",
                )?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()?;
            let Some((name, tenant, enrolments)) = head else {
                return Err(DbError::NotFound);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT c.title FROM enrolments e JOIN courses c ON c.id = e.course_id
                 WHERE e.user_id = ?1 ORDER BY e.enrolled_at DESC LIMIT 5",
            )?;
            let courses = stmt
                .query_map([id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(User {
                id,
                name,
                tenant,
                enrolments,
                courses,
            })
        })
        .await
    }

    /// Renames a user.
    pub(crate) async fn rename_user(&self, id: u64, name: String) -> Result<(), DbError> {
        self.run("rename_user", move |conn| {
            let changed = conn
                .prepare_cached("UPDATE users SET name = ?1 WHERE id = ?2")?
                .execute(params![name, id])?;
            if changed == 0 {
                return Err(DbError::NotFound);
            }
            Ok(())
        })
        .await
    }

    /// A product, or `None` when no product has that id.
    pub(crate) async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.run("product", move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT p.sku, p.name, p.price_cents, c.title
                     FROM products p LEFT JOIN courses c ON c.id = p.course_id
                     WHERE p.id = ?1",
                )?
                .query_row([id], |row| {
                    Ok(Product {
                        id,
                        sku: row.get(0)?,
                        name: row.get(1)?,
                        price_cents: row.get(2)?,
                        course: row.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    /// One tenant's settings; `NotFound` for a tenant with none.
    pub(crate) async fn tenant_settings(&self, tenant: String) -> Result<Settings, DbError> {
        self.run("tenant_settings", move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key, value FROM tenant_settings WHERE tenant = ?1")?;
            let settings: Settings = stmt
                .query_map([&tenant], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            if settings.is_empty() {
                return Err(DbError::NotFound);
            }
            Ok(settings)
        })
        .await
    }
}

/// The name of tenant `n` (`acme-0`, `acme-1`, ...).
pub(crate) fn tenant_name(n: u64) -> String {
    format!("acme-{n}")
}

/// Writes the schema and a deterministic data set in one transaction.
fn seed(conn: &mut Connection) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, tenant TEXT NOT NULL);
         CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                               instructor_id INTEGER NOT NULL REFERENCES users(id),
                               published INTEGER NOT NULL);
         CREATE TABLE enrolments (user_id INTEGER NOT NULL REFERENCES users(id),
                                  course_id INTEGER NOT NULL REFERENCES courses(id),
                                  rating INTEGER, enrolled_at INTEGER NOT NULL,
                                  PRIMARY KEY (user_id, course_id)) WITHOUT ROWID;
         CREATE INDEX enrolments_by_course ON enrolments(course_id, rating);
         CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, name TEXT NOT NULL,
                                price_cents INTEGER NOT NULL, course_id INTEGER REFERENCES courses(id));
         CREATE TABLE tenant_settings (tenant TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                                       PRIMARY KEY (tenant, key)) WITHOUT ROWID;",
    )?;
    // A fixed xorshift sequence: every run (and every test) sees the same data.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let tx = conn.transaction()?;
    {
        let mut user = tx.prepare("INSERT INTO users VALUES (?1, ?2, ?3)")?;
        for id in 1..=USERS {
            user.execute(params![id, format!("user{id}"), tenant_name(id % TENANTS)])?;
        }
        let mut course = tx.prepare("INSERT INTO courses VALUES (?1, ?2, ?3, ?4)")?;
        for id in 1..=COURSES {
            let published = next(10) != 0;
            course.execute(params![
                id,
                format!("Course {id}"),
                1 + next(USERS),
                published
            ])?;
        }
        let mut enrol = tx.prepare("INSERT OR IGNORE INTO enrolments VALUES (?1, ?2, ?3, ?4)")?;
        for user_id in 1..=USERS {
            for _ in 0..ENROLMENTS_PER_USER {
                // Skewed: low course ids are popular, as real catalogues are.
                let spread = next(COURSES) + 1;
                let course = 1 + next(spread);
                let rating = (next(3) != 0).then(|| 1 + next(5));
                enrol.execute(params![user_id, course, rating, next(1_000_000)])?;
            }
        }
        let mut product = tx.prepare("INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for id in 1..=PRODUCTS {
            let course = (next(4) != 0).then(|| 1 + next(COURSES));
            product.execute(params![
                id,
                format!("SKU-{id:05}"),
                format!("Product {id}"),
                500 + next(20_000),
                course
            ])?;
        }
        let mut setting = tx.prepare("INSERT INTO tenant_settings VALUES (?1, ?2, ?3)")?;
        for n in 0..TENANTS {
            let tenant = tenant_name(n);
            for (key, value) in [
                ("theme", format!("theme-{}", n % 4)),
                (
                    "locale",
                    ["en", "fr", "de", "es"][(n % 4) as usize].to_owned(),
                ),
                ("support_email", format!("help@{tenant}.example")),
                ("seats", (10 + n * 5).to_string()),
            ] {
                setting.execute(params![tenant, key, value])?;
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("ANALYZE")?;
    Ok(())
}
