//! SQL statements that write: what macros send through `run_query`, `statement` blocks and
//! hooks (`create table ... as`, `create table (cols)`, `insert into`, `update`, `delete`,
//! `truncate`, `drop`, `create view`, `create schema`, `alter table ... rename to`).
//! DataFusion would run them against in-memory tables of its catalog; the warehouse's tables
//! are Delta, Iceberg and Parquet folders, so each becomes a write of those instead, with the
//! same atomicity as a model's (one commit per statement). Transactions (`begin`, `commit`)
//! have nothing to group and are accepted. Queries go to the engine untouched.

use std::sync::Arc;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self, AlterTableOperation, FromTable, ObjectName, ObjectNamePart, ObjectType,
    RenameTableNameKind, SchemaName, Statement, TableFactor, TableObject,
};
use deltalake::protocol::SaveMode;

use super::{DataFusionAdapter, err, rewrite, streams};
use crate::adapter::{Adapter, AdapterError, QueryResult};
use crate::jinja::Relation;
use crate::materialize::TableFormat;

/// Runs `sql` (one statement, or several separated by `;`): the rows of the last one.
pub(super) async fn run(
    a: &DataFusionAdapter,
    sql: &str,
    limit: Option<usize>,
) -> Result<QueryResult, AdapterError> {
    let sql = rewrite::for_engine(sql);
    if reads_only(&sql) {
        return a.select(&sql, limit).await;
    }
    let dialect_name = a.ctx.state().config().options().sql_parser.dialect;
    let parsed = datafusion::sql::sqlparser::dialect::dialect_from_str(dialect_name)
        .ok_or_else(|| AdapterError(format!("unknown SQL dialect {dialect_name}")))
        .and_then(|dialect| {
            DFParserBuilder::new(sql.as_ref())
                .with_dialect(dialect.as_ref())
                .build()
                .and_then(|mut p| p.parse_statements())
                .map_err(err)
        });
    // What does not parse here goes to the engine, whose message names the problem.
    let Ok(statements) = parsed else {
        return a.select(&sql, limit).await;
    };
    let single = statements.len() == 1;
    let mut last = QueryResult::default();
    for statement in statements {
        last = match statement {
            DfStatement::Statement(s) => match write(a, &s).await? {
                Some(()) => QueryResult::default(),
                // A lone query keeps its text (no round trip through the parser's printer).
                None if single => a.select(&sql, limit).await?,
                None => a.select(&s.to_string(), limit).await?,
            },
            _ if single => a.select(&sql, limit).await?,
            other => a.select(&other.to_string(), limit).await?,
        };
    }
    Ok(last)
}

/// Whether `sql` starts as a query does (`select`, `with`, `(`, `values`): most statements
/// are, and they skip the parse.
fn reads_only(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    rest.starts_with('(') || matches!(word.as_str(), "select" | "with" | "values")
}

/// Applies `s` if it writes (`Some`); `None` for a query.
async fn write(a: &DataFusionAdapter, s: &Statement) -> Result<Option<()>, AdapterError> {
    match s {
        Statement::CreateTable(ct) => create_table(a, ct).await?,
        Statement::CreateView(cv) => {
            let rel = relation(a, &cv.name)?;
            let exists = a.relation_type(&rel).await;
            if exists.is_some() && cv.if_not_exists {
                return Ok(Some(()));
            }
            if exists.is_some() && !cv.or_replace {
                return Err(already_exists(&rel, "view"));
            }
            if exists == Some("table") {
                return Err(AdapterError(format!(
                    "{} is a table, not a view: drop it first",
                    rel.render()
                )));
            }
            a.create_view(&rel, &cv.query.to_string()).await?;
        }
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => match object_type {
            ObjectType::Table | ObjectType::View => {
                for name in names {
                    let rel = relation(a, name)?;
                    if forget_temporary(a, &rel) {
                        continue;
                    }
                    match a.relation_type(&rel).await {
                        Some(_) => drop_relation(a, &rel).await?,
                        None if *if_exists => {}
                        None => return Err(missing(&rel)),
                    }
                }
            }
            ObjectType::Schema => {
                for name in names {
                    drop_schema(a, &schema_name(name)?, *if_exists, *cascade).await?;
                }
            }
            _ => return Ok(None),
        },
        Statement::CreateSchema {
            schema_name: SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _),
            ..
        } => {
            a.store.prepare(&[&schema_name(name)?]).map_err(err)?;
        }
        Statement::Insert(ins) => match &ins.table {
            TableObject::TableName(name) if temporary(a, &relation(a, name)?).is_some() => {
                in_memory(a, s).await?
            }
            _ => insert(a, ins).await?,
        },
        Statement::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [table] = tables.as_slice() else {
                return Err(unsupported("a delete from several tables"));
            };
            if d.using.is_some() || !table.joins.is_empty() {
                return Err(unsupported("delete ... using"));
            }
            let rel = relation(a, table_name(&table.relation)?)?;
            if temporary(a, &rel).is_some() {
                in_memory(a, s).await?;
                return Ok(Some(()));
            }
            delete(a, &rel, d.selection.as_ref().map(ToString::to_string)).await?;
        }
        Statement::Truncate(t) => {
            for target in &t.table_names {
                let rel = relation(a, &target.name)?;
                match temporary(a, &rel) {
                    Some(table) => {
                        let empty =
                            datafusion::datasource::MemTable::try_new(table.schema(), vec![vec![]])
                                .map_err(err)?;
                        keep_temporary(a, &rel, Arc::new(empty));
                    }
                    None => delete(a, &rel, None).await?,
                }
            }
        }
        Statement::Update(u) => match temporary(a, &relation(a, table_name(&u.table.relation)?)?) {
            Some(_) => in_memory(a, s).await?,
            None => update(a, u).await?,
        },
        Statement::AlterTable(alter) => {
            let [AlterTableOperation::RenameTable { table_name }] = alter.operations.as_slice()
            else {
                return Err(unsupported("alter table other than `rename to`"));
            };
            let (RenameTableNameKind::To(to) | RenameTableNameKind::As(to)) = table_name;
            let from = relation(a, &alter.name)?;
            let to = match to.0.as_slice() {
                [_] => Relation::new(&from.database, &from.schema, &normalized(to)?[0]),
                _ => relation(a, to)?,
            };
            match temporary(a, &from) {
                Some(table) => {
                    forget_temporary(a, &from);
                    keep_temporary(a, &to, table);
                }
                None => rename(a, &from, &to).await?,
            }
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => {}
        _ => return Ok(None),
    }
    Ok(Some(()))
}

async fn create_table(a: &DataFusionAdapter, ct: &ast::CreateTable) -> Result<(), AdapterError> {
    let rel = relation(a, &ct.name)?;
    // A temporary table may hide a table of the same name, as on PostgreSQL.
    let exists = match ct.temporary {
        true => temporary(a, &rel).map(|_| "table"),
        false => a.relation_type(&rel).await,
    };
    if exists.is_some() && ct.if_not_exists {
        return Ok(());
    }
    if exists.is_some() && !ct.or_replace {
        return Err(already_exists(&rel, "table"));
    }
    let sql = match &ct.query {
        Some(q) => q.to_string(),
        None if ct.columns.is_empty() => {
            return Err(AdapterError(format!(
                "create table {} needs columns or `as <query>`",
                rel.render()
            )));
        }
        // The table's columns, typed, and no rows.
        None => format!(
            "select {} limit 0",
            ct.columns
                .iter()
                .map(|c| format!(
                    "cast(null as {}) as {}",
                    c.data_type,
                    crate::jinja::quote(&ident(&c.name))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let df = a.ctx.sql(&sql).await.map_err(err)?;
    if ct.temporary {
        // Columns take NULLs later (an insert naming some of them), whatever the query's were.
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            df.schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let batches = super::collect_as(df, schema.clone()).await?;
        let table =
            datafusion::datasource::MemTable::try_new(schema, vec![batches]).map_err(err)?;
        keep_temporary(a, &rel, Arc::new(table));
        return Ok(());
    }
    a.write_table(&rel, df, TableFormat::Delta).await?;
    Ok(())
}

/// The temporary table `rel` names, if there is one.
pub(super) fn temporary(
    a: &DataFusionAdapter,
    rel: &Relation,
) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
    a.externals
        .temporary
        .read()
        .ok()?
        .get(&temporary_key(a, rel))
        .cloned()
}

fn keep_temporary(
    a: &DataFusionAdapter,
    rel: &Relation,
    table: Arc<dyn datafusion::catalog::TableProvider>,
) {
    if let Ok(mut t) = a.externals.temporary.write() {
        t.insert(temporary_key(a, rel), table);
    }
}

/// Drops the temporary table `rel`; false if there is none.
fn forget_temporary(a: &DataFusionAdapter, rel: &Relation) -> bool {
    a.externals
        .temporary
        .write()
        .is_ok_and(|mut t| t.remove(&temporary_key(a, rel)).is_some())
}

/// A temporary table named without a schema is in the target's, where the engine resolves
/// such names.
fn temporary_key(a: &DataFusionAdapter, rel: &Relation) -> (String, String) {
    let schema = match rel.schema.is_empty() {
        true => a.schema.clone(),
        false => rel.schema.to_string(),
    };
    (schema, rel.identifier.to_string())
}

/// A statement on a temporary table: the engine's own (its tables in memory take inserts,
/// updates and deletes).
async fn in_memory(a: &DataFusionAdapter, s: &Statement) -> Result<(), AdapterError> {
    a.ctx
        .sql(&s.to_string())
        .await
        .map_err(err)?
        .collect()
        .await
        .map_err(err)?;
    Ok(())
}

async fn insert(a: &DataFusionAdapter, ins: &ast::Insert) -> Result<(), AdapterError> {
    use datafusion::logical_expr::{cast, lit};
    let TableObject::TableName(name) = &ins.table else {
        return Err(unsupported("insert into a table function"));
    };
    let rel = relation(a, name)?;
    let Some(source) = &ins.source else {
        return Err(unsupported("insert ... set"));
    };
    let format = delta_table(a, &rel, "insert into").await?;
    let target = a
        .ctx
        .sql(&format!("select * from {} limit 0", rel.render()))
        .await
        .map_err(err)?
        .schema()
        .as_arrow()
        .clone();
    let df = a.ctx.sql(&source.to_string()).await.map_err(err)?;
    let given: Vec<String> = if ins.columns.is_empty() {
        target.fields().iter().map(|f| f.name().clone()).collect()
    } else {
        ins.columns.iter().map(ident).collect()
    };
    let width = df.schema().fields().len();
    if width > given.len() {
        return Err(AdapterError(format!(
            "insert into {}: {width} values for {} columns",
            rel.render(),
            given.len()
        )));
    }
    if let Some(unknown) = given.iter().find(|c| target.field_with_name(c).is_err()) {
        return Err(AdapterError(format!(
            "column \"{unknown}\" of relation {} does not exist",
            rel.render()
        )));
    }
    // Values go to their columns by position; the columns not given are NULL.
    let exprs: Vec<_> = target
        .fields()
        .iter()
        .map(|f| {
            let value = match given[..width].iter().position(|c| c == f.name()) {
                Some(i) => {
                    datafusion::logical_expr::Expr::Column(df.schema().qualified_field(i).into())
                }
                None => lit(datafusion::scalar::ScalarValue::Null),
            };
            cast(value, f.data_type().clone()).alias(f.name())
        })
        .collect();
    let df = df.select(exprs).map_err(err)?;
    if ins.overwrite {
        a.write_table(&rel, df, format).await?;
        return Ok(());
    }
    let plan = a.ctx.state().optimize(df.logical_plan()).map_err(err)?;
    let table = a
        .delta(&rel)
        .await?
        .write(Vec::new())
        .with_input_plan(plan)
        .with_save_mode(SaveMode::Append)
        .with_session_state(Arc::new(a.ctx.state()))
        .with_commit_properties(streams::commit_properties())
        .await
        .map_err(err)?;
    a.committed(&rel, &table).await;
    Ok(())
}

async fn update(a: &DataFusionAdapter, u: &ast::Update) -> Result<(), AdapterError> {
    if u.from.is_some() || !u.table.joins.is_empty() {
        return Err(unsupported("update ... from"));
    }
    let rel = relation(a, table_name(&u.table.relation)?)?;
    delta_table(a, &rel, "update").await?;
    let mut builder = a
        .delta(&rel)
        .await?
        .update()
        .with_session_state(Arc::new(a.ctx.state()))
        .with_commit_properties(streams::commit_properties());
    for assignment in &u.assignments {
        let ast::AssignmentTarget::ColumnName(column) = &assignment.target else {
            return Err(unsupported("update of a column tuple"));
        };
        let column = normalized(column)?.pop().unwrap_or_default();
        builder = builder.with_update(column, assignment.value.to_string());
    }
    if let Some(predicate) = &u.selection {
        builder = builder.with_predicate(predicate.to_string());
    }
    let (table, _) = builder.await.map_err(err)?;
    a.committed(&rel, &table).await;
    Ok(())
}

/// Deletes the rows of `rel` matching `predicate` (all of them without one).
async fn delete(
    a: &DataFusionAdapter,
    rel: &Relation,
    predicate: Option<String>,
) -> Result<(), AdapterError> {
    delta_table(a, rel, "delete").await?;
    let mut builder = a
        .delta(rel)
        .await?
        .delete()
        .with_session_state(Arc::new(a.ctx.state()))
        .with_commit_properties(streams::commit_properties());
    if let Some(p) = predicate {
        builder = builder.with_predicate(p);
    }
    let (table, _) = builder.await.map_err(err)?;
    a.committed(rel, &table).await;
    Ok(())
}

/// Removes `rel`, whatever form it has (a view, a table of any format).
async fn drop_relation(a: &DataFusionAdapter, rel: &Relation) -> Result<(), AdapterError> {
    a.store
        .delete_view(&rel.schema, &rel.identifier)
        .await
        .map_err(err)?;
    a.remove_others(rel, None).await
}

async fn drop_schema(
    a: &DataFusionAdapter,
    schema: &str,
    if_exists: bool,
    cascade: bool,
) -> Result<(), AdapterError> {
    if !a.store.schemas().await.iter().any(|s| s == schema) {
        return match if_exists {
            true => Ok(()),
            false => Err(AdapterError(format!("schema \"{schema}\" does not exist"))),
        };
    }
    let tables = a.store.tables(schema).await;
    if !tables.is_empty() && !cascade {
        return Err(AdapterError(format!(
            "cannot drop schema \"{schema}\": it holds {} relation(s) ({}); write `drop schema ... cascade` to drop them too",
            tables.len(),
            tables.join(", ")
        )));
    }
    for table in &tables {
        drop_relation(a, &Relation::new(&a.database, schema, table)).await?;
    }
    a.store.delete(&[schema]).await.map_err(err)
}

/// `alter table from rename to to`: a table is copied under its new name (its history stays
/// behind), then the old one dropped; a view's SQL moves.
async fn rename(a: &DataFusionAdapter, from: &Relation, to: &Relation) -> Result<(), AdapterError> {
    let kind = a.relation_type(from).await.ok_or_else(|| missing(from))?;
    if a.relation_type(to).await.is_some() {
        return Err(already_exists(to, "relation"));
    }
    if kind == "view" {
        let sql = a
            .store
            .read_view(&from.schema, &from.identifier)
            .await
            .map_err(err)?
            .unwrap_or_default();
        a.store
            .write_view(&to.schema, &to.identifier, &sql)
            .await
            .map_err(err)?;
    } else {
        let format = table_format(a, from).await;
        let df = a
            .ctx
            .sql(&format!("select * from {}", from.render()))
            .await
            .map_err(err)?;
        a.write_table(to, df, format).await?;
    }
    drop_relation(a, from).await
}

async fn table_format(a: &DataFusionAdapter, rel: &Relation) -> TableFormat {
    if a.lake.exists(&rel.schema, &rel.identifier).await {
        TableFormat::Iceberg
    } else if a.store.is_parquet(&rel.schema, &rel.identifier).await {
        TableFormat::Parquet
    } else {
        TableFormat::Delta
    }
}

/// `rel`'s format if it is a Delta table (the statements that change rows in place write
/// Delta commits), else an error for `what`.
async fn delta_table(
    a: &DataFusionAdapter,
    rel: &Relation,
    what: &str,
) -> Result<TableFormat, AdapterError> {
    if a.store.is_delta(&rel.schema, &rel.identifier).await {
        return Ok(TableFormat::Delta);
    }
    Err(match a.relation_type(rel).await {
        None => missing(rel),
        Some("view") => AdapterError(format!("cannot {what} view {}", rel.render())),
        Some(_) => AdapterError(format!(
            "{what} {}: rows change in place in Delta tables only; this one is {:?} (table_format)",
            rel.render(),
            table_format(a, rel).await
        )),
    })
}

fn missing(rel: &Relation) -> AdapterError {
    AdapterError(format!("relation {} does not exist", rel.render()))
}

fn already_exists(rel: &Relation, kind: &str) -> AdapterError {
    AdapterError(format!(
        "relation {} already exists (write `create or replace {kind}`, `create {kind} if not exists`, or drop it first)",
        rel.render()
    ))
}

fn unsupported(what: &str) -> AdapterError {
    AdapterError(format!(
        "{what} is not supported on the embedded engine; write it as a model, or as several simpler statements"
    ))
}

fn table_name(t: &TableFactor) -> Result<&ObjectName, AdapterError> {
    match t {
        TableFactor::Table { name, .. } => Ok(name),
        other => Err(unsupported(&format!("writing to `{other}`"))),
    }
}

/// An identifier as the engine resolves it: unquoted ones in lower case.
fn ident(i: &ast::Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

fn normalized(name: &ObjectName) -> Result<Vec<String>, AdapterError> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => Ok(ident(i)),
            other => Err(unsupported(&format!("the name `{other}`"))),
        })
        .collect()
}

fn schema_name(name: &ObjectName) -> Result<String, AdapterError> {
    let parts = normalized(name)?;
    parts
        .last()
        .cloned()
        .ok_or_else(|| AdapterError("a schema needs a name".into()))
}

/// The relation `name` stands for: `table`, `schema.table` or `database.schema.table`, the
/// target's database and schema filling in what is left out.
fn relation(a: &DataFusionAdapter, name: &ObjectName) -> Result<Relation, AdapterError> {
    match normalized(name)?.as_slice() {
        [table] => Ok(Relation::new(&a.database, &a.schema, table)),
        [schema, table] => Ok(Relation::new(&a.database, schema, table)),
        [database, schema, table] if *database == a.database => {
            Ok(Relation::new(database, schema, table))
        }
        [database, _, _] => Err(AdapterError(format!(
            "{name}: the embedded warehouse is database \"{}\", not \"{database}\"",
            a.database
        ))),
        _ => Err(AdapterError(format!("{name} is not a table name"))),
    }
}

#[cfg(test)]
mod tests {
    use super::reads_only;

    #[test]
    fn queries_skip_the_statement_parse() {
        for sql in [
            "select 1",
            "  WITH a as (select 1) select * from a",
            "-- note\n/* more */ (select 1)",
            "values (1)",
        ] {
            assert!(reads_only(sql), "{sql}");
        }
        for sql in [
            "insert into t values (1)",
            "-- select\ncreate table t as select 1",
            "drop table t",
            "selected",
        ] {
            assert!(!reads_only(sql), "{sql}");
        }
    }
}
