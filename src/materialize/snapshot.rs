//! Snapshots (SCD type 2) as SQL: the new state of the snapshot table from its current state
//! and the source query. Pure text generation, so every strategy is unit-tested; the adapter
//! replaces the table with the result in one commit.

use crate::jinja::{Relation, quote, text_type};

#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotStrategy {
    /// A row changed when its `updated_at` is newer than the snapshotted one.
    Timestamp { updated_at: String },
    /// A row changed when any of these columns differs (null-safe).
    Check { columns: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardDeletes {
    Ignore,
    Invalidate,
    NewRecord,
}

/// Names of the meta columns (`snapshot_meta_column_names`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaColumns {
    pub scd_id: String,
    pub updated_at: String,
    pub valid_from: String,
    pub valid_to: String,
    pub is_deleted: String,
}

impl Default for MetaColumns {
    fn default() -> Self {
        Self {
            scd_id: "dbt_scd_id".into(),
            updated_at: "dbt_updated_at".into(),
            valid_from: "dbt_valid_from".into(),
            valid_to: "dbt_valid_to".into(),
            is_deleted: "dbt_is_deleted".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSpec {
    pub relation: Relation,
    /// The snapshot's compiled query.
    pub sql: String,
    /// Its output columns, in order.
    pub source_columns: Vec<String>,
    pub unique_key: Vec<String>,
    pub strategy: SnapshotStrategy,
    pub hard_deletes: HardDeletes,
    pub meta: MetaColumns,
    /// `dbt_valid_to_current`: an expression current rows carry instead of NULL.
    pub valid_to_current: Option<String>,
    /// This run's time, as a SQL timestamp literal text (`2024-01-01 10:00:00`).
    pub now: String,
    /// How this engine casts to the snapshot's timestamp type, `{}` standing for the value
    /// (DataFusion's TIMESTAMP is nanoseconds and cannot hold 9999-12-31: it uses microseconds).
    pub timestamp_cast: String,
    /// How this engine hashes text to `dbt_scd_id`, `{}` standing for the text (`md5({})`).
    pub hash: String,
}

impl SnapshotSpec {
    fn ts(&self, value: &str) -> String {
        self.timestamp_cast.replace("{}", value)
    }

    fn now(&self) -> String {
        self.ts(&format!("'{}'", self.now))
    }

    fn valid_to_open(&self) -> String {
        match &self.valid_to_current {
            Some(expr) => self.ts(expr),
            None => self.ts("null"),
        }
    }

    fn is_current(&self, alias: &str) -> String {
        let vt = format!("{alias}.{}", quote(&self.meta.valid_to));
        match &self.valid_to_current {
            Some(expr) => format!("({vt} is null or {vt} = {})", self.ts(expr)),
            None => format!("{vt} is null"),
        }
    }

    fn key_eq(&self, a: &str, b: &str) -> String {
        self.unique_key
            .iter()
            .map(|k| format!("{a}.{q} = {b}.{q}", q = quote(k)))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The version timestamp of a source row (`alias.updated_at`, or this run's time).
    fn version_time(&self, alias: &str) -> String {
        match &self.strategy {
            SnapshotStrategy::Timestamp { updated_at } => {
                self.ts(&format!("{alias}.{}", quote(updated_at)))
            }
            SnapshotStrategy::Check { .. } => self.now(),
        }
    }

    /// dbt's `dbt_scd_id`: md5 of the key and the version time.
    fn scd_id(&self, alias: &str, time: &str) -> String {
        let mut parts: Vec<String> = self
            .unique_key
            .iter()
            .map(|k| {
                format!(
                    "coalesce(cast({alias}.{} as {}), '')",
                    quote(k),
                    text_type()
                )
            })
            .collect();
        parts.push(format!("coalesce(cast({time} as {}), '')", text_type()));
        self.hash
            .replace("{}", &format!("concat({})", parts.join(", '|', ")))
    }

    fn cols(&self, alias: &str) -> String {
        self.source_columns
            .iter()
            .map(|c| format!("{alias}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A new current version of the source rows in `alias`.
    fn new_version(&self, alias: &str, deleted: bool) -> String {
        let time = if deleted {
            self.now()
        } else {
            self.version_time(alias)
        };
        let mut s = format!(
            "select {}, {} as {}, {time} as {}, {time} as {}, {} as {}",
            self.cols(alias),
            self.scd_id(alias, &time),
            quote(&self.meta.scd_id),
            quote(&self.meta.updated_at),
            quote(&self.meta.valid_from),
            self.valid_to_open(),
            quote(&self.meta.valid_to)
        );
        if self.hard_deletes == HardDeletes::NewRecord {
            s.push_str(&format!(
                ", '{}' as {}",
                if deleted { "True" } else { "False" },
                quote(&self.meta.is_deleted)
            ));
        }
        s
    }

    /// The first build: every source row is a current version.
    pub fn initial_sql(&self) -> String {
        format!(
            "{}\nfrom (\n{}\n) src",
            self.new_version("src", false),
            self.sql.trim().trim_end_matches(';')
        )
    }

    /// The table's next state, given that it exists (`relation`).
    pub fn update_sql(&self) -> String {
        let m = &self.meta;
        let (scd, vt, upd) = (quote(&m.scd_id), quote(&m.valid_to), quote(&m.updated_at));
        let k1 = quote(&self.unique_key[0]);
        let new_record = self.hard_deletes == HardDeletes::NewRecord;
        let was_deleted = |alias: &str| format!("{alias}.{} = 'True'", quote(&m.is_deleted));
        let changed = match &self.strategy {
            SnapshotStrategy::Timestamp { .. } => {
                format!("{} > cur.{upd}", self.version_time("src"))
            }
            SnapshotStrategy::Check { columns } => {
                let same: Vec<String> = columns
                    .iter()
                    .map(|c| format!("(src.{q} is not distinct from cur.{q})", q = quote(c)))
                    .collect();
                format!("not ({})", same.join(" and "))
            }
        };
        let changed = if new_record {
            format!("({changed}) or {}", was_deleted("cur"))
        } else {
            changed
        };
        let gone_filter = if new_record {
            format!(" and not ({})", was_deleted("cur"))
        } else {
            String::new()
        };
        let mut closing = vec![format!(
            "when u.old_scd is not null then {}",
            self.version_time("u")
        )];
        if self.hard_deletes != HardDeletes::Ignore {
            closing.push(format!("when g.{scd} is not null then {}", self.now()));
        }
        let mut existing: Vec<String> = self
            .source_columns
            .iter()
            .map(|c| format!("t.{}", quote(c)))
            .collect();
        existing.push(format!("t.{scd}"));
        existing.push(format!("t.{upd}"));
        existing.push(format!("t.{}", quote(&m.valid_from)));
        existing.push(format!(
            "case {} else t.{vt} end as {vt}",
            closing.join(" ")
        ));
        if new_record {
            existing.push(format!("t.{}", quote(&m.is_deleted)));
        }
        let mut sql = format!(
            "with src as (\n{}\n),\ncur as (select * from {} t where {}),\n\
             upd as (select src.*, cur.{scd} as old_scd from src join cur on {} where {changed}),\n\
             ins as (select src.* from src left join cur on {} where cur.{k1} is null),\n\
             gone as (select cur.* from cur left join src on {} where src.{k1} is null{gone_filter})\n\
             select {}\nfrom {} t\nleft join upd u on u.old_scd = t.{scd}\nleft join gone g on g.{scd} = t.{scd}\n\
             union all\n{}\nfrom upd u\nunion all\n{}\nfrom ins i",
            self.sql.trim().trim_end_matches(';'),
            self.relation.render(),
            self.is_current("t"),
            self.key_eq("src", "cur"),
            self.key_eq("src", "cur"),
            self.key_eq("cur", "src"),
            existing.join(", "),
            self.relation.render(),
            self.new_version("u", false),
            self.new_version("i", false),
        );
        if new_record {
            sql.push_str(&format!(
                "\nunion all\n{}\nfrom gone g",
                self.new_version("g", true)
            ));
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strategy: SnapshotStrategy, hard: HardDeletes) -> SnapshotSpec {
        SnapshotSpec {
            relation: Relation::new("w", "snapshots", "orders_snapshot"),
            sql: "select * from orders".into(),
            source_columns: vec!["id".into(), "status".into(), "updated_at".into()],
            unique_key: vec!["id".into()],
            strategy,
            hard_deletes: hard,
            meta: MetaColumns::default(),
            valid_to_current: None,
            now: "2024-06-01 00:00:00".into(),
            timestamp_cast: "cast({} as timestamp)".into(),
            hash: "md5({})".into(),
        }
    }

    #[test]
    fn snapshot_sql_shapes() {
        let ts = spec(
            SnapshotStrategy::Timestamp {
                updated_at: "updated_at".into(),
            },
            HardDeletes::Ignore,
        );
        let first = ts.initial_sql();
        assert!(first.starts_with("select src.\"id\", src.\"status\", src.\"updated_at\", md5(concat(coalesce(cast(src.\"id\" as varchar), ''), '|', coalesce(cast(cast(src.\"updated_at\" as timestamp) as varchar), ''))) as \"dbt_scd_id\""), "{first}");
        assert!(first.contains("cast(null as timestamp) as \"dbt_valid_to\""));
        let next = ts.update_sql();
        assert!(
            next.contains("where cast(src.\"updated_at\" as timestamp) > cur.\"dbt_updated_at\""),
            "{next}"
        );
        assert!(
            !next.contains("from gone g\n") && !next.contains("when g."),
            "{next}"
        );
        let check = spec(
            SnapshotStrategy::Check {
                columns: vec!["status".into()],
            },
            HardDeletes::NewRecord,
        );
        let next = check.update_sql();
        assert!(next.contains("not ((src.\"status\" is not distinct from cur.\"status\"))) or cur.\"dbt_is_deleted\" = 'True'"), "{next}");
        assert!(
            next.contains("'True' as \"dbt_is_deleted\"\nfrom gone g"),
            "{next}"
        );
        assert!(
            next.contains(
                "when g.\"dbt_scd_id\" is not null then cast('2024-06-01 00:00:00' as timestamp)"
            ),
            "{next}"
        );
    }
}
