//! The statement engine under every write: owned statements ([`Statement`], [`Arg`]), several
//! sent as one (chained for SQLite, combined into one data-modifying `WITH` for PostgreSQL),
//! one run on a held connection, a lost connection told from a refused statement, and the
//! reading of a row with the rows joined to it. Also SQLite's pragmas, for every connection.

use std::borrow::Cow;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Executor, Row};

use super::connections::Connections;
use super::Result;

/// An owned value bound to a write statement (a write may run after its caller returned, so
/// it owns its inputs).
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::OptText(v.map(str::to_owned))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::OptText(v.clone())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::OptInt(v)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(v.to_vec())
    }
}
impl From<Option<&[u8]>> for Arg {
    fn from(v: Option<&[u8]>) -> Arg {
        Arg::OptBytes(v.map(<[u8]>::to_vec))
    }
}

/// One write statement and its values.
#[derive(Debug, Clone)]
pub struct Statement {
    pub(super) sql: Cow<'static, str>,
    pub(super) args: Vec<Arg>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, args: Vec<Arg>) -> Statement {
        Statement {
            sql: sql.into(),
            args,
        }
    }

    /// Runs on `conn`; the number of rows it changed.
    pub(super) async fn run(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<u64, sqlx::Error> {
        Ok(self.query().execute(conn).await?.rows_affected())
    }

    pub(super) fn query(&self) -> sqlx::query::Query<'_, Any, AnyArguments<'_>> {
        let mut query: sqlx::query::Query<'_, Any, AnyArguments<'_>> = sqlx::query(&self.sql);
        for arg in &self.args {
            query = match arg {
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::OptText(v) => query.bind(v.as_deref()),
                Arg::Int(v) => query.bind(*v),
                Arg::OptInt(v) => query.bind(*v),
                Arg::Bytes(v) => query.bind(v.as_slice()),
                Arg::OptBytes(v) => query.bind(v.as_deref()),
            };
        }
        query
    }

    /// SQLite: `statements` as one text of statements separated by `;`, their arguments
    /// renumbered to follow each other. SQLite prepares and runs them one after the other in a
    /// single call to the connection's worker thread, where one call each would cost a round
    /// trip to that thread per statement; [`Chained::run_counting`] reads the rows each changed.
    /// sqlx 0.8 keeps this for SQLite but marks it deprecated (its issue 3108): should an
    /// upgrade run only the first statement, `run_counting` fails the write instead of leaving
    /// it half done, and `statements_chained_for_sqlite_count_each_and_fail_as_one` fails.
    pub(super) fn chained(statements: &[Statement]) -> Chained {
        let mut sql = String::new();
        let mut args = Vec::new();
        for statement in statements {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            let text = statement.sql.trim().trim_end_matches(';');
            sql.push_str(&renumber_arguments(text, args.len()));
            args.extend(statement.args.iter().cloned());
        }
        Chained {
            statement: Statement::new(sql, args),
            count: statements.len(),
        }
    }

    /// PostgreSQL: `statements` (inserts, updates and deletes numbering their arguments `$1`
    /// up) as one statement, each a data-modifying `WITH` returning a row per row it changed,
    /// counted in a column per statement: atomic as a transaction is, in one round trip.
    /// `None` for a single statement or one that does not fit (another kind, a `RETURNING`).
    pub(super) fn combined(statements: &[Statement]) -> Option<Combined> {
        if statements.len() < 2 {
            return None;
        }
        let mut with = Vec::with_capacity(statements.len());
        let mut counts = Vec::with_capacity(statements.len());
        let mut args = Vec::new();
        for (i, statement) in statements.iter().enumerate() {
            let sql = statement.sql.trim().trim_end_matches(';');
            let upper = sql.to_ascii_uppercase();
            let writes = ["INSERT ", "UPDATE ", "DELETE "]
                .iter()
                .any(|kind| upper.starts_with(kind));
            if !writes || upper.contains("RETURNING") {
                return None;
            }
            with.push(format!(
                "s{i} AS ({} RETURNING 1)",
                renumber_arguments(sql, args.len())
            ));
            counts.push(format!("(SELECT COUNT(*) FROM s{i})"));
            args.extend(statement.args.iter().cloned());
        }
        let sql = format!("WITH {} SELECT {}", with.join(", "), counts.join(", "));
        Some(Combined {
            statement: Statement::new(sql, args),
            count: statements.len(),
        })
    }
}

/// Several statements in one text ([`Statement::chained`]).
pub(super) struct Chained {
    pub(super) statement: Statement,
    pub(super) count: usize,
}

impl Chained {
    /// Runs every statement, in order; the rows each changed.
    pub(super) async fn run_counting(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Vec<u64>, sqlx::Error> {
        use futures_util::TryStreamExt;
        let mut changed = Vec::with_capacity(self.count);
        let mut results = conn.fetch_many(self.statement.query());
        while let Some(item) = results.try_next().await? {
            if let sqlx::Either::Left(done) = item {
                changed.push(done.rows_affected());
            }
        }
        if changed.len() != self.count {
            return Err(sqlx::Error::Protocol(format!(
                "{} statements ran where {} were sent",
                changed.len(),
                self.count
            )));
        }
        Ok(changed)
    }
}

/// Several statements made one ([`Statement::combined`]).
pub(super) struct Combined {
    pub(super) statement: Statement,
    pub(super) count: usize,
}

impl Combined {
    /// Runs on a connection of `conns` (a lost connection noted); the rows each statement
    /// changed.
    pub(super) async fn run_on(&self, conns: &Connections) -> Result<Vec<u64>> {
        let mut conn = conns.get().await?;
        let changed = self.run_counting(conn.connection()?).await;
        Ok(conn.noted(changed)?)
    }

    /// The rows each statement changed.
    pub(super) async fn run_counting(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Vec<u64>, sqlx::Error> {
        let row = self.statement.query().fetch_one(conn).await?;
        (0..self.count)
            .map(|i| {
                let n: i64 = row.try_get(i)?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .collect()
    }
}

/// `sql` with every `$N` argument made `$(N + offset)`.
pub(super) fn renumber_arguments(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// `Statement::new(SQL, vec![a.into(), b.into(), …])`.
macro_rules! statement {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::store::Statement::new($sql, vec![$($crate::store::Arg::from($arg)),*])
    };
}
pub(super) use statement;

/// Whether the row's `key` column holds a value, not `NULL`.
pub(super) fn present(row: &AnyRow, key: &str) -> std::result::Result<bool, sqlx::Error> {
    Ok(row.try_get::<Option<String>, _>(key)?.is_some())
}

/// What reads one value from a row.
pub(super) type RowReader<T> = fn(&AnyRow) -> std::result::Result<T, sqlx::Error>;

/// A row with the rows joined to it, read the same way wherever the join comes from: `None`
/// when there are no rows, or only one whose `key` column is `NULL` (a left join's, see
/// [`prefetch`](super::fast::prefetch)); otherwise the head from the first row and an item
/// from each row whose `item_key` is not `NULL`.
pub(super) fn head_and_items<H, I>(
    rows: &[AnyRow],
    (key, head): (&str, RowReader<H>),
    (item_key, item): (&str, RowReader<I>),
) -> std::result::Result<Option<(H, Vec<I>)>, sqlx::Error> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    if !present(first, key)? {
        return Ok(None);
    }
    let head = head(first)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        if present(row, item_key)? {
            items.push(item(row)?);
        }
    }
    Ok(Some((head, items)))
}

/// One statement on a connection of `conns` (a lost connection noted); the rows it changed.
pub(super) async fn run_on(conns: &Connections, statement: &Statement) -> Result<u64> {
    let mut conn = conns.get().await?;
    let changed = statement.run(conn.connection()?).await;
    Ok(conn.noted(changed)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::{AccountRow, Store, StoreError};
    use sqlx::Row;

    #[test]
    fn statements_combined_for_postgresql_number_their_arguments_in_turn() {
        assert_eq!(
            renumber_arguments("UPDATE t SET a = $1 WHERE b = $2 AND c = $12 AND d = $", 3),
            "UPDATE t SET a = $4 WHERE b = $5 AND c = $15 AND d = $"
        );
        let combined = Statement::combined(&[
            statement!("INSERT INTO t (a, b) VALUES ($1, $2)", "x", 1i64),
            statement!(
                "UPDATE u SET a = CASE WHEN $1 > 0 THEN $1 ELSE a END WHERE id = $2;",
                2i64,
                "y"
            ),
        ])
        .unwrap();
        assert_eq!(
            combined.statement.sql,
            "WITH s0 AS (INSERT INTO t (a, b) VALUES ($1, $2) RETURNING 1), \
             s1 AS (UPDATE u SET a = CASE WHEN $3 > 0 THEN $3 ELSE a END WHERE id = $4 RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM s0), (SELECT COUNT(*) FROM s1)"
        );
        assert_eq!((combined.statement.args.len(), combined.count), (4, 2));
        // One statement needs no combining; a read or a RETURNING cannot be combined.
        let insert = statement!("INSERT INTO t (a) VALUES ($1)", "x");
        assert!(Statement::combined(std::slice::from_ref(&insert)).is_none());
        for other in [
            statement!("SELECT a FROM t WHERE a = $1", "x"),
            statement!("INSERT INTO t (a) VALUES ($1) RETURNING a", "x"),
        ] {
            assert!(Statement::combined(&[insert.clone(), other]).is_none());
        }
    }

    /// On SQLite several statements go to the connection as one text: each still reports the
    /// rows it changed, their arguments keep to their own statement, and a statement that
    /// fails takes the earlier ones' changes with it.
    #[tokio::test]
    async fn statements_chained_for_sqlite_count_each_and_fail_as_one() {
        let chained = Statement::chained(&[
            statement!("INSERT INTO t (a, b) VALUES ($1, $2);", "x", 1i64),
            statement!("UPDATE t SET b = $2 WHERE a = $1", "x", 2i64),
        ]);
        assert_eq!(
            chained.statement.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2);\nUPDATE t SET b = $4 WHERE a = $3"
        );
        assert_eq!((chained.statement.args.len(), chained.count), (4, 2));

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pkid.db").display());
        let store = Store::connect(&url, 1).await.unwrap();
        for id in ["a1", "a2"] {
            let account = AccountRow::for_tests(id);
            store.insert_account(&account, None).await.unwrap();
        }
        let accounts = || async {
            sqlx::query("SELECT id, contact, status FROM accounts ORDER BY id")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("id"), r.get("contact"), r.get("status")))
                .collect::<Vec<(String, String, String)>>()
        };
        let contact = |id: &str, contact: &str| {
            statement!(
                "UPDATE accounts SET contact = $1 WHERE id = $2",
                contact,
                id
            )
        };
        let changed = store
            .execute_all(vec![
                contact("a1", r#"["mailto:one@pkid.test"]"#),
                contact("nobody", "[]"),
                statement!(
                    "UPDATE accounts SET status = 'deactivated' WHERE id IN ($1, $2)",
                    "a1",
                    "a2"
                ),
            ])
            .await
            .unwrap();
        assert_eq!(changed, vec![1, 0, 2]);
        let expected = vec![
            (
                "a1".to_owned(),
                r#"["mailto:one@pkid.test"]"#.to_owned(),
                "deactivated".to_owned(),
            ),
            ("a2".to_owned(), "[]".to_owned(), "deactivated".to_owned()),
        ];
        assert_eq!(accounts().await, expected);

        // The second statement breaks the accounts' unique thumbprint: the first one's change
        // is undone with it, and the third never runs.
        let failed = store
            .execute_all(vec![
                contact("a2", r#"["mailto:two@pkid.test"]"#),
                statement!(
                    "UPDATE accounts SET thumbprint = 'thumbprint-a1' WHERE id = $1",
                    "a2"
                ),
                contact("a1", "[]"),
            ])
            .await;
        assert!(matches!(failed, Err(StoreError::Db(_))), "{failed:?}");
        assert_eq!(accounts().await, expected, "nothing half-written");
    }
}
