//! PostgreSQL tables as sources of the embedded engine, through a connection named in the
//! profile (`connections:`). The scan sends PostgreSQL one `COPY (SELECT <columns> FROM <table>
//! WHERE <filters> LIMIT <n>) TO STDOUT` — only the columns the query uses, the filters whose
//! meaning is the same in both engines, and the limit — and turns the CSV stream into Arrow
//! batches as it arrives (arrow-csv's push decoder), so a table is never held whole in memory.
//!
//! Types: integers, floats, `numeric(p,s)` (Decimal128; unconstrained numeric as
//! Decimal128(38,10)), `bool`, `date`, `timestamp`, `timestamptz` (UTC), `time`, text types,
//! `uuid` / `json` / `jsonb` / `interval` as text, arrays of scalars as lists.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringArray,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::scalar::ScalarValue;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;

use crate::adapter::postgres::PostgresAdapter;
use crate::jinja::quote;

/// The profile's named PostgreSQL connections (`connections:`), each connected on first use.
#[derive(Debug, Default)]
pub struct Connections(super::warehouse::Named<PostgresAdapter>);

impl Connections {
    pub fn set(&self, settings: serde_json::Map<String, serde_json::Value>) {
        self.0.set(settings)
    }

    pub async fn get(&self, name: &str) -> std::result::Result<Arc<PostgresAdapter>, String> {
        self.0
            .get(name, ("connection", "connections"), |fields| async move {
                // Scans of one query may stream at the same time: a few connections each.
                let threads = fields.get("threads").and_then(|t| t.as_u64()).unwrap_or(4) as usize;
                let target = crate::project::Target {
                    name: name.to_string(),
                    profile_name: String::new(),
                    adapter_type: "postgres".into(),
                    schema: "public".into(),
                    database: String::new(),
                    threads,
                    fields,
                    profiles_path: Default::default(),
                };
                PostgresAdapter::connect(&target)
                    .await
                    .map_err(|e| format!("connection '{name}': {}", e.0))
            })
            .await
    }
}

fn ext(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

/// One column: its Arrow type, and the expression that selects it as CSV-parsable text.
#[derive(Debug, Clone)]
struct PgColumn {
    name: String,
    data_type: DataType,
    select: String,
    /// Arrays arrive as JSON text and become lists after parsing.
    json_list: bool,
}

#[derive(Debug)]
pub struct PostgresTable {
    pg: Arc<PostgresAdapter>,
    /// `"schema"."table"`
    table: String,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
}

/// The columns of `schema.table` from PostgreSQL's catalog, as Arrow types.
async fn columns_of(
    pg: &PostgresAdapter,
    schema: &str,
    table: &str,
) -> Result<(Vec<PgColumn>, SchemaRef)> {
    let name = format!("{}.{}", quote(schema), quote(table));
    let rows = pg
        .query_text(
            "select a.attname::text, t.typname::text, a.atttypmod::text, et.typname::text
             from pg_attribute a
             join pg_type t on t.oid = a.atttypid
             left join pg_type et on et.oid = t.typelem and t.typcategory = 'A'
             where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped
             order by a.attnum",
            &[&name],
        )
        .await
        .map_err(ext)?;
    if rows.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "PostgreSQL has no table or view {schema}.{table} (or it has no columns)"
        )));
    }
    let columns: Vec<PgColumn> = rows
        .into_iter()
        .map(|r| {
            let col = r[0].clone().unwrap_or_default();
            let typmod: i32 = r[2].as_deref().and_then(|t| t.parse().ok()).unwrap_or(-1);
            column(&col, r[1].as_deref().unwrap_or(""), typmod, r[3].as_deref())
        })
        .collect();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), true))
            .collect::<Vec<_>>(),
    ));
    Ok((columns, schema))
}

/// The columns of a PostgreSQL table or view as Arrow types (static analysis of the
/// PostgreSQL target plans models against them).
pub async fn table_schema(pg: &PostgresAdapter, schema: &str, table: &str) -> Option<SchemaRef> {
    columns_of(pg, schema, table).await.ok().map(|(_, s)| s)
}

impl PostgresTable {
    /// Reads the column types of `schema.table` from the catalog.
    pub async fn open(pg: Arc<PostgresAdapter>, schema: &str, table: &str) -> Result<Self> {
        let (columns, arrow) = columns_of(&pg, schema, table).await?;
        Ok(Self {
            pg,
            table: format!("{}.{}", quote(schema), quote(table)),
            columns,
            schema: arrow,
        })
    }

    /// The SQL sent to PostgreSQL for a scan.
    fn select_sql(&self, projection: &[usize], filters: &[Expr], limit: Option<usize>) -> String {
        let cols: Vec<&str> = projection
            .iter()
            .map(|&i| self.columns[i].select.as_str())
            .collect();
        let mut sql = if cols.is_empty() {
            // `count(*)`: rows without columns; one constant column keeps COPY's lines apart.
            format!("select 1 from {}", self.table)
        } else {
            format!("select {} from {}", cols.join(", "), self.table)
        };
        let wheres: Vec<String> = filters.iter().filter_map(|f| self.to_sql(f)).collect();
        if !wheres.is_empty() {
            sql.push_str(&format!(" where {}", wheres.join(" and ")));
        }
        if let Some(n) = limit {
            sql.push_str(&format!(" limit {n}"));
        }
        sql
    }

    /// A filter as PostgreSQL SQL, if it means there what it means in DataFusion.
    fn to_sql(&self, e: &Expr) -> Option<String> {
        if !self.same_meaning(e) {
            return None;
        }
        let unqualified = e
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => Transformed::yes(Expr::Column(
                        datafusion::common::Column::new_unqualified(c.name),
                    )),
                    other => Transformed::no(other),
                })
            })
            .ok()?
            .data;
        Unparser::new(&PostgreSqlDialect {})
            .expr_to_sql(&unqualified)
            .ok()
            .map(|s| format!("({s})"))
    }

    /// Comparisons, boolean logic, NULL tests and IN lists over columns and literals of
    /// numbers, dates and booleans, and equality of strings. Ordering of strings is left to
    /// DataFusion (PostgreSQL's collation may order them differently), and so are functions.
    fn same_meaning(&self, e: &Expr) -> bool {
        let is_text = |e: &Expr| match e {
            Expr::Column(c) => self
                .schema
                .field_with_name(&c.name)
                .map(|f| f.data_type() == &DataType::Utf8)
                .unwrap_or(true),
            Expr::Literal(v, _) => matches!(
                v,
                ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_)
            ),
            _ => false,
        };
        let simple_type = |t: &DataType| {
            t.is_numeric() || matches!(t, DataType::Date32 | DataType::Boolean | DataType::Utf8)
        };
        match e {
            Expr::Column(c) => self
                .schema
                .field_with_name(&c.name)
                .is_ok_and(|f| simple_type(f.data_type())),
            Expr::Literal(v, _) => !v.is_null() && simple_type(&v.data_type()) || is_text(e),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let ordering = matches!(
                    op,
                    Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                );
                let allowed = matches!(
                    op,
                    Operator::And | Operator::Or | Operator::Eq | Operator::NotEq
                ) || ordering;
                allowed
                    && !(ordering && (is_text(left) || is_text(right)))
                    && self.same_meaning(left)
                    && self.same_meaning(right)
            }
            Expr::Not(inner) | Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                self.same_meaning(inner)
            }
            Expr::InList(l) => {
                self.same_meaning(&l.expr) && l.list.iter().all(|x| self.same_meaning(x))
            }
            Expr::Between(b) => {
                !is_text(&b.expr)
                    && self.same_meaning(&b.expr)
                    && self.same_meaning(&b.low)
                    && self.same_meaning(&b.high)
            }
            // Widening a number keeps its value.
            Expr::Cast(c) => {
                c.data_type.is_numeric() && self.same_meaning(&c.expr) && {
                    matches!(&*c.expr, Expr::Column(_)) || matches!(&*c.expr, Expr::Literal(..))
                }
            }
            _ => false,
        }
    }
}

/// The Arrow type and select expression of a PostgreSQL column.
fn column(name: &str, typname: &str, typmod: i32, elem: Option<&str>) -> PgColumn {
    let q = quote(name);
    let text = |t: DataType| (t, format!("{q}::text"));
    let (data_type, select) = match typname {
        "int2" => (DataType::Int16, q.clone()),
        "int4" => (DataType::Int32, q.clone()),
        "int8" | "oid" => (DataType::Int64, q.clone()),
        "float4" => (DataType::Float32, q.clone()),
        "float8" => (DataType::Float64, q.clone()),
        "numeric" if typmod >= 4 => {
            let precision = (((typmod - 4) >> 16) & 0xffff) as u8;
            let scale = ((typmod - 4) & 0xffff) as i8;
            (DataType::Decimal128(precision.min(38), scale), q.clone())
        }
        "numeric" => (DataType::Decimal128(38, 10), format!("round({q}, 10)")),
        // `true::text` is 'true' (COPY would write 't').
        "bool" => text(DataType::Boolean),
        "date" => (DataType::Date32, q.clone()),
        "timestamp" => (DataType::Timestamp(TimeUnit::Microsecond, None), q.clone()),
        "timestamptz" => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            format!("({q} at time zone 'UTC')"),
        ),
        "time" => (DataType::Time64(TimeUnit::Microsecond), q.clone()),
        "_int2" | "_int4" | "_int8" | "_float4" | "_float8" | "_numeric" | "_bool" | "_text"
        | "_varchar" | "_bpchar" => {
            let item = match elem.unwrap_or("") {
                "int2" | "int4" | "int8" => DataType::Int64,
                "float4" | "float8" | "numeric" => DataType::Float64,
                "bool" => DataType::Boolean,
                _ => DataType::Utf8,
            };
            return PgColumn {
                name: name.to_string(),
                data_type: DataType::List(Arc::new(Field::new("item", item, true))),
                select: format!("array_to_json({q})::text"),
                json_list: true,
            };
        }
        _ => text(DataType::Utf8),
    };
    PgColumn {
        name: name.to_string(),
        data_type,
        select,
        json_list: false,
    }
}

#[async_trait]
impl TableProvider for PostgresTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.to_sql(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let sql = self.select_sql(&projection, filters, limit);
        let columns: Vec<PgColumn> = projection
            .iter()
            .map(|&i| self.columns[i].clone())
            .collect();
        let out_schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(Arc::new(ScanExec::new(
            self.pg.clone(),
            sql,
            columns,
            out_schema,
        )))
    }
}

/// The scan: one COPY, decoded into batches as the bytes arrive.
#[derive(Debug)]
struct ScanExec {
    pg: Arc<PostgresAdapter>,
    sql: String,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    properties: Arc<datafusion::physical_plan::PlanProperties>,
}

impl ScanExec {
    fn new(
        pg: Arc<PostgresAdapter>,
        sql: String,
        columns: Vec<PgColumn>,
        schema: SchemaRef,
    ) -> Self {
        use datafusion::physical_expr::EquivalenceProperties;
        use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
        let properties = Arc::new(datafusion::physical_plan::PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            datafusion::physical_plan::Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            pg,
            sql,
            columns,
            schema,
            properties,
        }
    }
}

impl datafusion::physical_plan::DisplayAs for ScanExec {
    fn fmt_as(
        &self,
        _t: datafusion::physical_plan::DisplayFormatType,
        f: &mut std::fmt::Formatter,
    ) -> std::fmt::Result {
        write!(f, "PostgresScan: {}", self.sql)
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        "PostgresScan"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(16);
        let pg = self.pg.clone();
        let copy = format!(
            "copy ({}) to stdout with (format csv, null '\\N')",
            self.sql
        );
        let errors = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = pg.copy_out(&copy, tx).await {
                let _ = errors.send(Err(e.0)).await;
            }
        });
        // What arrow-csv parses: arrays as their JSON text; no columns as the constant 1.
        let wire = Arc::new(Schema::new(if self.columns.is_empty() {
            vec![Field::new("one", DataType::Int32, true)]
        } else {
            self.columns
                .iter()
                .map(|c| {
                    let t = if c.json_list {
                        DataType::Utf8
                    } else {
                        c.data_type.clone()
                    };
                    Field::new(&c.name, t, true)
                })
                .collect()
        }));
        let decoder = datafusion::arrow::csv::ReaderBuilder::new(wire)
            .with_header(false)
            .with_batch_size(batch_size)
            .with_null_regex(regex::Regex::new(r"^\\N$").map_err(ext)?)
            .build_decoder();
        let out = self.schema.clone();
        let lists: Vec<bool> = self.columns.iter().map(|c| c.json_list).collect();
        let state = Decode {
            rx,
            decoder,
            pending: bytes::Bytes::new(),
            done: false,
        };
        let stream = futures::stream::unfold(state, move |mut s| {
            let out = out.clone();
            let lists = lists.clone();
            async move {
                let batch = match s.next_batch().await {
                    Ok(Some(b)) => b,
                    Ok(None) => return None,
                    Err(e) => return Some((Err(e), s)),
                };
                Some((finish(batch, &out, &lists), s))
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

struct Decode {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    decoder: datafusion::arrow::csv::reader::Decoder,
    pending: bytes::Bytes,
    done: bool,
}

impl Decode {
    /// The next full batch (or the last, partial one).
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.pending.is_empty() && !self.done {
                match self.rx.recv().await {
                    Some(Ok(chunk)) => self.pending = chunk,
                    Some(Err(e)) => return Err(DataFusionError::Execution(e)),
                    None => self.done = true,
                }
            }
            if !self.pending.is_empty() {
                let used = self.decoder.decode(&self.pending)?;
                let _ = self.pending.split_to(used);
                if self.decoder.capacity() == 0 {
                    return Ok(self.decoder.flush()?);
                }
                continue;
            }
            if self.done {
                return Ok(self.decoder.flush()?);
            }
        }
    }
}

/// A decoded batch in the output schema: JSON arrays parsed into lists; for a scan without
/// columns, only the row count.
fn finish(batch: RecordBatch, out: &SchemaRef, lists: &[bool]) -> Result<RecordBatch> {
    if out.fields().is_empty() {
        return Ok(RecordBatch::try_new_with_options(
            out.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(out.fields())
        .zip(lists)
        .map(|((c, f), &list)| {
            if !list {
                return Ok(c.clone());
            }
            let texts = c
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| ext("internal error: array column not read as text"))?;
            json_lists(texts, f.data_type())
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(out.clone(), columns)?)
}

fn json_lists(texts: &StringArray, t: &DataType) -> Result<ArrayRef> {
    let DataType::List(item) = t else {
        return Err(ext("internal error: not a list type"));
    };
    let parse = |i: usize| -> Result<Option<Vec<serde_json::Value>>> {
        if texts.is_null(i) {
            return Ok(None);
        }
        match serde_json::from_str::<serde_json::Value>(texts.value(i)).map_err(ext)? {
            serde_json::Value::Array(v) => Ok(Some(v)),
            _ => Ok(Some(vec![])),
        }
    };
    macro_rules! build {
        ($builder:expr, $get:expr) => {{
            let mut b = ListBuilder::new($builder);
            for i in 0..texts.len() {
                match parse(i)? {
                    None => b.append(false),
                    Some(items) => {
                        for v in items {
                            b.values().append_option($get(&v));
                        }
                        b.append(true);
                    }
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match item.data_type() {
        DataType::Int64 => build!(Int64Builder::new(), |v: &serde_json::Value| v.as_i64()),
        DataType::Float64 => build!(Float64Builder::new(), |v: &serde_json::Value| v.as_f64()),
        DataType::Boolean => build!(BooleanBuilder::new(), |v: &serde_json::Value| v.as_bool()),
        _ => build!(StringBuilder::new(), |v: &serde_json::Value| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }),
    })
}
