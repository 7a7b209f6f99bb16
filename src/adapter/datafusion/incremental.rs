//! Incremental runs on Delta, one commit each: `append`, `merge` (deltalake's MERGE),
//! `delete+insert` and `insert_overwrite` (a write with `replace_where`, so the old rows go and
//! the new ones arrive in the same version). An increment with no rows writes nothing, so an
//! idle run adds no version and no data file.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::prelude::lit;
use datafusion::scalar::ScalarValue;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use super::{DataFusionAdapter, err, streams};
use crate::adapter::{AdapterError, Applied};
use crate::jinja::quote;
use crate::materialize::{IncrementalSpec, SchemaChange, Strategy};

const SOURCE: &str = "dbt_internal_source";
const DEST: &str = "dbt_internal_dest";

pub(super) async fn apply(
    a: &DataFusionAdapter,
    spec: &IncrementalSpec,
) -> Result<Applied, AdapterError> {
    let ctx = &a.ctx;
    if spec.format != crate::materialize::TableFormat::Delta {
        return append_only(a, spec).await;
    }
    let df = ctx
        .sql(&super::rewrite::for_engine(&spec.sql))
        .await
        .map_err(err)?;
    let source_schema: Schema = df.schema().as_arrow().clone();
    let target_schema: Schema = ctx
        .sql(&format!("select * from {} limit 0", spec.relation.render()))
        .await
        .map_err(err)?
        .schema()
        .as_arrow()
        .clone();
    // An append of the table's own columns streams from the query into the commit (a stream's
    // backlog need not fit in memory); the other strategies collect the increment: it is small
    // by design, and they need its rows (keys, schema changes) before writing.
    let same_columns = source_schema.fields().len() == target_schema.fields().len()
        && source_schema
            .fields()
            .iter()
            .zip(target_schema.fields())
            .all(|(s, t)| s.name() == t.name() && s.data_type() == t.data_type());
    let appends = spec.strategy == Strategy::Append
        || (spec.strategy == Strategy::Merge && spec.unique_key.is_empty());
    if appends && same_columns && spec.replace_where.is_none() {
        return append_streamed(a, spec, df, &target_schema).await;
    }
    let batches = df.collect().await.map_err(err)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

    let added: Vec<String> = source_schema
        .fields()
        .iter()
        .filter(|f| target_schema.field_with_name(f.name()).is_err())
        .map(|f| f.name().clone())
        .collect();
    let removed: Vec<String> = target_schema
        .fields()
        .iter()
        .filter(|f| source_schema.field_with_name(f.name()).is_err())
        .map(|f| f.name().clone())
        .collect();
    let schema_changed = !added.is_empty() || !removed.is_empty();
    if schema_changed && spec.on_schema_change == SchemaChange::Fail {
        return Err(AdapterError(format!(
            "The source and target schemas on this incremental model are out of sync: new columns {added:?}, missing columns {removed:?}. \
             Set on_schema_change (append_new_columns, sync_all_columns) or run with --full-refresh"
        )));
    }
    if rows == 0 {
        if let Some(window) = &spec.replace_where {
            // An empty batch still replaces its window: the rows it had are gone.
            let (table, _) = a
                .delta(&spec.relation)
                .await?
                .delete()
                .with_predicate(window.clone())
                .with_session_state(Arc::new(ctx.state()))
                .with_commit_properties(streams::commit_properties())
                .await
                .map_err(err)?;
            a.committed(&spec.relation, &table).await;
        } else {
            return nothing_new(a, spec, &target_schema).await;
        }
        return Ok(Applied {
            code: spec.strategy.as_str().to_uppercase(),
            rows_affected: Some(0),
        });
    }
    if schema_changed && spec.on_schema_change == SchemaChange::SyncAllColumns {
        // The table takes the new column set first (removed columns dropped, new ones NULL).
        let current = ctx
            .sql(&format!("select * from {}", spec.relation.render()))
            .await
            .map_err(err)?;
        let aligned = align(
            current.collect().await.map_err(err)?,
            &target_schema,
            &source_schema,
            ctx,
        )
        .await?;
        let table = a
            .delta(&spec.relation)
            .await?
            .write(aligned)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .await
            .map_err(err)?;
        a.committed(&spec.relation, &table).await;
    }
    // The new rows in the table's column layout: with `ignore`, new columns are dropped and
    // missing ones NULL; with `append_new_columns`, new columns are kept and added.
    let layout = match spec.on_schema_change {
        SchemaChange::AppendNewColumns => {
            let mut fields: Vec<_> = target_schema.fields().iter().cloned().collect();
            fields.extend(
                source_schema
                    .fields()
                    .iter()
                    .filter(|f| added.contains(f.name()))
                    .cloned(),
            );
            Schema::new(fields)
        }
        SchemaChange::SyncAllColumns => source_schema.clone(),
        _ => target_schema.clone(),
    };
    let batches = if schema_changed {
        align(batches, &source_schema, &layout, ctx).await?
    } else {
        batches
    };
    let merge_schema = spec.on_schema_change == SchemaChange::AppendNewColumns && !added.is_empty();
    let table = a.delta(&spec.relation).await?;
    let state = Arc::new(ctx.state());
    let columns: Vec<String> = layout.fields().iter().map(|f| f.name().clone()).collect();

    let strategy = if spec.strategy == Strategy::Merge && spec.unique_key.is_empty() {
        Strategy::Append
    } else {
        spec.strategy
    };
    let schema_mode = if merge_schema {
        Some(SchemaMode::Merge)
    } else {
        None
    };
    match strategy {
        Strategy::Append => {
            let mut w = table
                .write(batches)
                .with_save_mode(SaveMode::Append)
                .with_session_state(state)
                .with_commit_properties(streams::commit_properties());
            if let Some(m) = schema_mode {
                w = w.with_schema_mode(m);
            }
            a.committed(&spec.relation, &w.await.map_err(err)?).await;
            Ok(Applied {
                code: "INSERT".into(),
                rows_affected: Some(rows as u64),
            })
        }
        Strategy::Merge => {
            let mut on: Vec<String> = spec
                .unique_key
                .iter()
                .map(|k| format!("{DEST}.{q} = {SOURCE}.{q}", q = quote(k)))
                .collect();
            // dbt's docs write `DBT_INTERNAL_DEST.col`; deltalake's merge predicate is parsed
            // without folding identifiers to lowercase.
            on.extend(spec.predicates.iter().map(|p| {
                let p = replace_alias(p, DEST, &format!("{DEST}."));
                format!("({})", replace_alias(&p, SOURCE, &format!("{SOURCE}.")))
            }));
            let update: Vec<String> = match &spec.merge_update_columns {
                Some(cols) => cols.clone(),
                None => columns
                    .iter()
                    .filter(|c| !spec.merge_exclude_columns.contains(c))
                    .cloned()
                    .collect(),
            };
            let source = ctx.read_batches(batches).map_err(err)?;
            let (table, metrics) = table
                .merge(source, on.join(" and "))
                .with_source_alias(SOURCE)
                .with_target_alias(DEST)
                .with_merge_schema(merge_schema)
                .with_session_state(state)
                .with_commit_properties(streams::commit_properties())
                .when_matched_update(|u| {
                    update.iter().fold(u, |u, c| {
                        u.update(c.as_str(), format!("{SOURCE}.{}", quote(c)))
                    })
                })
                .map_err(err)?
                .when_not_matched_insert(|i| {
                    columns.iter().fold(i, |i, c| {
                        i.set(c.as_str(), format!("{SOURCE}.{}", quote(c)))
                    })
                })
                .map_err(err)?
                .await
                .map_err(err)?;
            a.committed(&spec.relation, &table).await;
            let affected = metrics.num_target_rows_inserted + metrics.num_target_rows_updated;
            Ok(Applied {
                code: "MERGE".into(),
                rows_affected: Some(affected as u64),
            })
        }
        Strategy::DeleteInsert | Strategy::InsertOverwrite | Strategy::Microbatch => {
            let keys = if strategy == Strategy::DeleteInsert {
                &spec.unique_key
            } else {
                &spec.partition_by
            };
            let mut w = table
                .write(batches.clone())
                .with_save_mode(SaveMode::Overwrite)
                .with_session_state(state)
                .with_commit_properties(streams::commit_properties());
            if let Some(window) = &spec.replace_where {
                w = w.with_replace_where(window.clone());
            } else if !keys.is_empty() {
                // The existing rows with the new rows' keys (partitions) are replaced in one commit.
                let mut predicate = values_predicate(ctx, &batches, keys).await?;
                for p in &spec.predicates {
                    predicate = format!("({predicate}) and ({})", strip_dest_alias(p));
                }
                w = w.with_replace_where(predicate);
            }
            if let Some(m) = schema_mode {
                w = w.with_schema_mode(m);
            }
            a.committed(&spec.relation, &w.await.map_err(err)?).await;
            let code = match strategy {
                Strategy::DeleteInsert => "DELETE+INSERT",
                Strategy::Microbatch => "MICROBATCH",
                _ => "INSERT OVERWRITE",
            };
            Ok(Applied {
                code: code.into(),
                rows_affected: Some(rows as u64),
            })
        }
    }
}

/// An append whose rows stream from the query into one Delta commit, counted on the way. The
/// first rows are awaited before anything is written, so an empty increment writes nothing
/// (or, when it read stream records that the model filtered out, commits only their offsets).
async fn append_streamed(
    a: &DataFusionAdapter,
    spec: &IncrementalSpec,
    df: datafusion::dataframe::DataFrame,
    target_schema: &Schema,
) -> Result<Applied, AdapterError> {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let ctx = &a.ctx;
    // Batches take the plan's schema: UNION ALL branches may differ in nullability, which the
    // Delta writer rejects.
    let schema = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await.map_err(err)?;
    let first = loop {
        match stream.next().await {
            Some(Ok(b)) if b.num_rows() == 0 => continue,
            Some(Ok(b)) => break Some(b),
            Some(Err(e)) => return Err(err(e)),
            None => break None,
        }
    };
    let Some(first) = first else {
        return nothing_new(a, spec, target_schema).await;
    };
    let rows = Arc::new(AtomicU64::new(0));
    let counted = rows.clone();
    let reshaped = schema.clone();
    let rest = futures::stream::once(async { Ok(first) })
        .chain(stream)
        .map(move |b| {
            let b = b?;
            counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            Ok(RecordBatch::try_new(
                reshaped.clone(),
                b.columns().to_vec(),
            )?)
        });
    let started = OneShot::new(Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), rest),
    ));
    let table =
        datafusion::catalog::streaming::StreamingTable::try_new(schema, vec![Arc::new(started)])
            .map_err(err)?;
    let plan = ctx
        .read_table(Arc::new(table))
        .map_err(err)?
        .into_optimized_plan()
        .map_err(err)?;
    let table = a
        .delta(&spec.relation)
        .await?
        .write(Vec::new())
        .with_input_plan(plan)
        .with_save_mode(SaveMode::Append)
        .with_session_state(Arc::new(ctx.state()))
        .with_commit_properties(streams::commit_properties())
        .await
        .map_err(err)?;
    a.committed(&spec.relation, &table).await;
    Ok(Applied {
        code: "INSERT".into(),
        rows_affected: Some(rows.load(Ordering::Relaxed)),
    })
}

/// An increment without rows writes nothing; but when it read stream records (or landed
/// files) that the model filtered out, the offsets still move on, alone in a commit.
async fn nothing_new(
    a: &DataFusionAdapter,
    spec: &IncrementalSpec,
    target_schema: &Schema,
) -> Result<Applied, AdapterError> {
    if streams::advanced() {
        let table = a
            .delta(&spec.relation)
            .await?
            .write(vec![RecordBatch::new_empty(Arc::new(
                target_schema.clone(),
            ))])
            .with_save_mode(SaveMode::Append)
            .with_session_state(Arc::new(a.ctx.state()))
            .with_commit_properties(streams::commit_properties())
            .await
            .map_err(err)?;
        a.committed(&spec.relation, &table).await;
    }
    Ok(Applied {
        code: spec.strategy.as_str().to_uppercase(),
        rows_affected: Some(0),
    })
}

/// A stream already started, read once as the one partition of a table (the Delta writer
/// takes a plan, not a stream).
struct OneShot {
    schema: datafusion::arrow::datatypes::SchemaRef,
    stream: std::sync::Mutex<Option<datafusion::physical_plan::SendableRecordBatchStream>>,
}

impl OneShot {
    fn new(stream: datafusion::physical_plan::SendableRecordBatchStream) -> Self {
        OneShot {
            schema: stream.schema(),
            stream: std::sync::Mutex::new(Some(stream)),
        }
    }
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneShot")
    }
}

impl datafusion::physical_plan::streaming::PartitionStream for OneShot {
    fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        &self.schema
    }

    fn execute(
        &self,
        _: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::physical_plan::SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(s) => s,
            // Planned twice: the rows went to the first execution.
            None => Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::once(async {
                        Err(datafusion::error::DataFusionError::Internal(
                            "an incremental append's rows were read twice".into(),
                        ))
                    }),
                ),
            ),
        }
    }
}

/// An incremental run on Iceberg: append only (checked before the run, see
/// [`crate::materialize::check_format`]); `on_schema_change: fail` still fails.
/// An incremental run on a format that can only append (Iceberg, Parquet).
async fn append_only(
    a: &DataFusionAdapter,
    spec: &IncrementalSpec,
) -> Result<Applied, AdapterError> {
    let df = a
        .ctx
        .sql(&super::rewrite::for_engine(&spec.sql))
        .await
        .map_err(err)?;
    if spec.on_schema_change == SchemaChange::Fail {
        let target = a
            .ctx
            .sql(&format!("select * from {} limit 0", spec.relation.render()))
            .await
            .map_err(err)?;
        let names = |s: &datafusion::common::DFSchema| -> Vec<String> {
            let mut v: Vec<String> = s.fields().iter().map(|f| f.name().clone()).collect();
            v.sort();
            v
        };
        if names(df.schema()) != names(target.schema()) {
            return Err(AdapterError(format!(
                "The source and target schemas on this incremental model are out of sync: the model has columns {:?}, the table {:?}. Run with --full-refresh",
                names(df.schema()),
                names(target.schema())
            )));
        }
    }
    let (schema, name) = (&spec.relation.schema, &spec.relation.identifier);
    let rows = if spec.format == crate::materialize::TableFormat::Parquet {
        let target = a
            .ctx
            .sql(&format!("select * from {} limit 0", spec.relation.render()))
            .await
            .map_err(err)?;
        let df = super::conform(df, target.schema().as_arrow())?;
        super::parquet::append(&a.ctx, &a.store, schema, name, df).await?
    } else {
        a.lake.append(schema, name, df).await?
    };
    Ok(Applied {
        code: "INSERT".into(),
        rows_affected: Some(rows),
    })
}

/// Rows reshaped from `from` to the `to` column layout: missing columns become typed NULLs.
async fn align(
    batches: Vec<RecordBatch>,
    from: &Schema,
    to: &Schema,
    ctx: &datafusion::prelude::SessionContext,
) -> Result<Vec<RecordBatch>, AdapterError> {
    if batches.is_empty() {
        return Ok(batches);
    }
    let df = ctx.read_batches(batches).map_err(err)?;
    let exprs: Vec<Expr> = to
        .fields()
        .iter()
        .map(|f| {
            if from.field_with_name(f.name()).is_ok() {
                Ok(Expr::Column(Column::new_unqualified(f.name())))
            } else {
                let null = ScalarValue::try_from(f.data_type()).map_err(err)?;
                Ok(lit(null).alias(f.name()))
            }
        })
        .collect::<Result<_, AdapterError>>()?;
    let df = df.select(exprs).map_err(err)?;
    df.collect().await.map_err(err)
}

/// `"k" IN (1, 2)` or `("a" = 1 AND "b" = 'x') OR ...` for the distinct key values of `batches`.
async fn values_predicate(
    ctx: &datafusion::prelude::SessionContext,
    batches: &[RecordBatch],
    keys: &[String],
) -> Result<String, AdapterError> {
    let df = ctx.read_batches(batches.to_vec()).map_err(err)?;
    let cols: Vec<Expr> = keys
        .iter()
        .map(|k| Expr::Column(Column::new_unqualified(k)))
        .collect();
    let distinct = df
        .select(cols)
        .map_err(err)?
        .distinct()
        .map_err(err)?
        .collect()
        .await
        .map_err(err)?;
    let mut tuples: Vec<Vec<String>> = Vec::new();
    for b in &distinct {
        for row in 0..b.num_rows() {
            let mut t = Vec::new();
            for c in 0..b.num_columns() {
                let v = ScalarValue::try_from_array(b.column(c), row).map_err(err)?;
                t.push(sql_literal(&v)?);
            }
            tuples.push(t);
        }
    }
    if keys.len() == 1 {
        let (nulls, values): (Vec<_>, Vec<_>) = tuples
            .into_iter()
            .map(|t| t.into_iter().next().unwrap())
            .partition(|v| v == "NULL");
        let mut parts = Vec::new();
        if !values.is_empty() {
            parts.push(format!("{} IN ({})", quote(&keys[0]), values.join(", ")));
        }
        if !nulls.is_empty() {
            parts.push(format!("{} IS NULL", quote(&keys[0])));
        }
        return Ok(parts.join(" OR "));
    }
    let ors: Vec<String> = tuples
        .into_iter()
        .map(|t| {
            let ands: Vec<String> = keys
                .iter()
                .zip(t)
                .map(|(k, v)| {
                    if v == "NULL" {
                        format!("{} IS NULL", quote(k))
                    } else {
                        format!("{} = {v}", quote(k))
                    }
                })
                .collect();
            format!("({})", ands.join(" AND "))
        })
        .collect();
    Ok(ors.join(" OR "))
}

/// A value as SQL text, through DataFusion's unparser (quoting and escaping done right).
fn sql_literal(v: &ScalarValue) -> Result<String, AdapterError> {
    if v.is_null() {
        return Ok("NULL".into());
    }
    let expr = datafusion::sql::unparser::expr_to_sql(&lit(v.clone())).map_err(err)?;
    let text = expr.to_string();
    // Dates and timestamps need a cast to compare with the column, not a string.
    Ok(match v.data_type() {
        DataType::Date32 | DataType::Date64 => format!("CAST({text} AS DATE)"),
        DataType::Timestamp(..) => format!("CAST({text} AS TIMESTAMP)"),
        _ => text,
    })
}

/// Incremental predicates name the existing rows `DBT_INTERNAL_DEST`; a replace-where
/// predicate has no alias.
fn strip_dest_alias(p: &str) -> String {
    replace_alias(p, DEST, "")
}

/// `p` with each `<alias>.` (in any case; `alias` lowercase) replaced by `with`.
fn replace_alias(p: &str, alias: &str, with: &str) -> String {
    let lower = p.to_ascii_lowercase();
    let needle = format!("{alias}.");
    let mut out = String::new();
    let mut i = 0;
    while let Some(pos) = lower[i..].find(&needle) {
        out.push_str(&p[i..i + pos]);
        out.push_str(with);
        i += pos + needle.len();
    }
    out.push_str(&p[i..]);
    out
}
