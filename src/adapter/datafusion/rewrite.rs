//! What DataFusion cannot plan or run, rewritten into what it can: `ROLLUP` and `CUBE` over
//! column tuples (`rollup((a, b), c)`, which DuckDB and PostgreSQL accept) become the
//! `GROUPING SETS` they stand for, and PostgreSQL's first regex match as a scalar subquery,
//! `(select regexp_matches(s, re, flags))` (packages' `postgres__` macros, dbt-expectations'
//! regex tests), becomes `regexp_match(s, re, flags)`, in the SQL text before planning (only a
//! statement that changed is printed back); correlated scalar subqueries over an aggregate
//! that DataFusion's decorrelation leaves in place become joins, by an optimizer rule on the
//! logical plan ([`DecorrelateScalarAggregates`]).

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query, SelectItem,
    SetExpr, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` as the engine can plan it.
pub fn for_engine(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !(lower.contains("rollup")
        || lower.contains("cube")
        || lower.contains("regexp_matches")
        || lower.contains("->")
        || lower.contains("#>")
        || lower.contains("json")
        || lower.contains("unnest")
        || lower.contains("interval")
        || lower.contains("datetime"))
    {
        return Cow::Borrowed(sql);
    }
    let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Cow::Borrowed(sql);
    };
    let mut changed = false;
    let mut rewrite = |expr: &mut Expr| {
        if let Some(new) = grouping_sets(expr)
            .or_else(|| first_regex_match(expr))
            .or_else(|| json_access(expr))
            .or_else(|| interval_times(expr))
            .or_else(|| datetime_type(expr))
        {
            *expr = new;
            changed = true;
        }
        ControlFlow::Continue(())
    };
    let mut walk = Walk {
        expr: &mut rewrite,
        unnest: true,
        unnest_changed: false,
    };
    let _ = statements.visit(&mut walk);
    let unnest_changed = walk.unnest_changed;
    if !(changed || unnest_changed) {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
    )
}

/// The one sqlparser visitor type of rsdbt: each visitor type compiles sqlparser's whole walk
/// of its AST again (~500 generic functions, each behind a stack-growth guard), and with four
/// of them that walk was 18% of this crate's code. Every expression gets `expr` after its
/// children; with `unnest`, relations are fixed as [`Walk::post_visit_table_factor`] and
/// [`lateral_unnest`] say.
struct Walk<'a> {
    expr: &'a mut dyn FnMut(&mut Expr) -> ControlFlow<()>,
    unnest: bool,
    unnest_changed: bool,
}

/// `expr` on every expression in `node`, after its children; stops at the first `Break`.
fn walk_exprs(
    node: &mut impl VisitMut,
    expr: &mut dyn FnMut(&mut Expr) -> ControlFlow<()>,
) -> ControlFlow<()> {
    node.visit(&mut Walk {
        expr,
        unnest: false,
        unnest_changed: false,
    })
}

impl VisitorMut for Walk<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        (self.expr)(expr)
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if self.unnest
            && let SetExpr::Select(select) = query.body.as_mut()
        {
            for from in select.from.iter_mut() {
                self.unnest_changed |= lateral_unnest(from);
            }
        }
        ControlFlow::Continue(())
    }

    /// `unnest(x) as t` of one array, whose column PostgreSQL names `t` (`select t from ...
    /// cross join unnest(...) as t`, Fivetran's `split_to_rows` patterns), as
    /// `unnest(x) as t(t)`: the engine would name it `UNNEST(...)`.
    fn post_visit_table_factor(&mut self, table_factor: &mut TableFactor) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::TableAliasColumnDef;
        if !self.unnest {
            return ControlFlow::Continue(());
        }
        if let TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } = table_factor
            && alias.columns.is_empty()
            && array_exprs.len() == 1
        {
            alias.columns = vec![TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
            self.unnest_changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `from t cross join unnest(f(t.col)) as m` — an unnest reading the table it is joined to,
/// which DataFusion cannot run as a join — as `from (select t.*, unnest(f(t.col)) as m from t)
/// as t`: the same rows, the unnested value a column `m` beside `t`'s. Only that shape (one
/// table, one such join).
fn lateral_unnest(from: &mut datafusion::sql::sqlparser::ast::TableWithJoins) -> bool {
    use datafusion::sql::sqlparser::ast::{JoinOperator, ObjectNamePart, TableAlias};
    let [join] = from.joins.as_slice() else {
        return false;
    };
    let (
        JoinOperator::CrossJoin(_),
        TableFactor::UNNEST {
            alias: Some(unnest_alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        },
    ) = (&join.join_operator, &join.relation)
    else {
        return false;
    };
    let [array] = array_exprs.as_slice() else {
        return false;
    };
    // A copy, walked as every rewrite is (see `Walk`).
    let reads_columns = walk_exprs(&mut array.clone(), &mut |e| match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    let table = match &from.relation {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            a.name.clone()
        }
        TableFactor::Table {
            name, alias: None, ..
        } => match name.0.last() {
            Some(ObjectNamePart::Identifier(i)) => i.clone(),
            _ => return false,
        },
        _ => return false,
    };
    if !reads_columns {
        return false;
    }
    let column = unnest_alias
        .columns
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| unnest_alias.name.clone());
    let sql = format!(
        "select {table}.*, unnest({array}) as {column} from {}",
        from.relation
    );
    let Ok(subquery) = Parser::new(&GenericDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
    else {
        return false;
    };
    from.relation = TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(TableAlias {
            explicit: true,
            name: table,
            columns: vec![],
        }),
        sample: None,
    };
    from.joins.clear();
    true
}

/// `interval '1 second' * n` (PostgreSQL's `dateadd`, Fivetran's `timestamp_add`), which
/// DataFusion cannot multiply, as the interval of `n` seconds:
/// `cast(cast(n * 1 as varchar) || ' second' as interval)`.
fn interval_times(expr: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::BinaryOperator;
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Multiply,
        right,
    } = expr
    else {
        return None;
    };
    let unnest = |e: &Expr| -> Expr {
        let mut e = e.clone();
        while let Expr::Nested(inner) = e {
            e = *inner;
        }
        e
    };
    // (amount, unit) of a literal interval `'3 hour'` or `'3' hour`.
    let literal = |e: &Expr| -> Option<(String, String)> {
        let Expr::Interval(i) = unnest(e) else {
            return None;
        };
        let Expr::Value(v) = i.value.as_ref() else {
            return None;
        };
        let Value::SingleQuotedString(text) = &v.value else {
            return None;
        };
        let mut words = text.split_whitespace();
        let amount = words.next()?.to_string();
        amount.parse::<f64>().ok()?;
        let unit = match (words.next(), &i.leading_field) {
            (Some(u), None) => u.to_string(),
            (None, Some(f)) => f.to_string(),
            _ => return None,
        };
        (words.next().is_none() && i.last_field.is_none()).then_some((amount, unit))
    };
    let ((amount, unit), factor) = match (literal(left), literal(right)) {
        (Some(l), None) => (l, right),
        (None, Some(r)) => (r, left),
        _ => return None,
    };
    let sql = format!(
        "cast(cast(({factor}) * {amount} as varchar) || ' {}' as interval)",
        unit.to_ascii_lowercase()
    );
    Parser::new(&GenericDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `cast(x as datetime)` (BigQuery's and Snowflake's name, which packages' `default__` macros
/// use) as a timestamp.
fn datetime_type(expr: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{DataType, TimezoneInfo};
    let Expr::Cast {
        kind,
        expr: inner,
        data_type: DataType::Datetime(_),
        format,
        array,
    } = expr
    else {
        return None;
    };
    Some(Expr::Cast {
        kind: kind.clone(),
        expr: inner.clone(),
        data_type: DataType::Timestamp(None, TimezoneInfo::None),
        format: format.clone(),
        array: *array,
    })
}

/// PostgreSQL's and DuckDB's JSON operators as the functions of [`super::json`]; a cast to
/// `json` / `jsonb` keeps the text (the engine has no JSON type).
fn json_access(expr: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, DataType};
    let unjson = |e: &Expr| match e {
        Expr::Cast {
            expr,
            data_type: DataType::JSON | DataType::JSONB,
            ..
        } => (**expr).clone(),
        other => other.clone(),
    };
    // The generic parser binds `doc #>> '{a}' = 'x'` as `doc #>> ('{a}' = 'x')`; PostgreSQL
    // binds the JSON operators tighter than comparisons.
    let json_op = |op: &BinaryOperator| {
        matches!(
            op,
            BinaryOperator::LongArrow
                | BinaryOperator::Arrow
                | BinaryOperator::HashLongArrow
                | BinaryOperator::HashArrow
        )
    };
    if let Expr::BinaryOp { left, op, right } = expr
        && json_op(op)
        && let Expr::BinaryOp {
            left: key,
            op: outer,
            right: rest,
        } = right.as_ref()
        && matches!(key.as_ref(), Expr::Value(_))
        && !json_op(outer)
    {
        let access = json_access(&Expr::BinaryOp {
            left: left.clone(),
            op: op.clone(),
            right: key.clone(),
        })?;
        return Some(Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(access))),
            op: outer.clone(),
            right: rest.clone(),
        });
    }
    let (left, right, text, array_form) = match expr {
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::LongArrow => (left.clone(), right, true, false),
            BinaryOperator::Arrow => (left.clone(), right, false, false),
            BinaryOperator::HashLongArrow => (left.clone(), right, true, true),
            BinaryOperator::HashArrow => (left.clone(), right, false, true),
            _ => return None,
        },
        // The generic parser reads `col -> 'key'` as a lambda; one whose body is a literal is
        // no function anyone writes.
        Expr::Lambda(l) if matches!(&*l.body, Expr::Value(_)) => match &l.params {
            datafusion::sql::sqlparser::ast::OneOrManyWithParens::One(p) => {
                (Box::new(Expr::Identifier(p.clone())), &l.body, false, false)
            }
            _ => return None,
        },
        Expr::Cast {
            data_type: DataType::JSON | DataType::JSONB,
            ..
        } => return Some(unjson(expr)),
        _ => return None,
    };
    let literal = |k: &str| format!("'{}'", k.replace('\'', "''"));
    let keys: Vec<String> = match &**right {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(path) => super::json::path_keys(path, array_form)
                .iter()
                .map(|k| literal(k))
                .collect(),
            Value::Number(n, _) => vec![literal(n)],
            _ => vec![right.to_string()],
        },
        other => vec![other.to_string()],
    };
    // The document may hold operators of its own (`(doc -> 'a') ->> 'b'`).
    let mut doc = unjson(&left);
    let _ = walk_exprs(&mut doc, &mut |e| {
        if let Some(new) = json_access(e) {
            *e = new;
        }
        ControlFlow::Continue(())
    });
    let call = format!(
        "{}({doc}, {})",
        super::json::function_name(text),
        keys.join(", ")
    );
    Parser::new(&GenericDialect {})
        .try_with_sql(&call)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `rollup` / `cube` with a column tuple, as the grouping sets it stands for.
fn grouping_sets(expr: &Expr) -> Option<Expr> {
    let sets = match expr {
        Expr::Rollup(items) if items.iter().any(|i| i.len() > 1) => {
            // rollup(e1, ..., en): every prefix, longest first, down to ().
            (0..=items.len())
                .rev()
                .map(|n| items[..n].concat())
                .collect::<Vec<_>>()
        }
        Expr::Cube(items) if items.iter().any(|i| i.len() > 1) => {
            // cube(e1, ..., en): every subset, in the order PostgreSQL lists them.
            let n = items.len();
            (0..1u64 << n)
                .rev()
                .map(|mask| {
                    (0..n)
                        .filter(|i| mask & (1 << (n - 1 - i)) != 0)
                        .flat_map(|i| items[i].clone())
                        .collect()
                })
                .collect()
        }
        _ => return None,
    };
    Some(Expr::GroupingSets(sets))
}

/// `(select regexp_matches(s, re[, flags]))`: PostgreSQL's set of matches, of which the scalar
/// subquery keeps the first, i.e. `regexp_match(s, re[, flags])` (the captures of the first
/// match, or null). On the embedded engine a bare `regexp_matches` is DuckDB's boolean, so only
/// this form is PostgreSQL's. Flags DataFusion's regexes do not take are dropped: `g` (a
/// scalar subquery keeps one match anyway) and `c` (case-sensitive, the default).
fn first_regex_match(expr: &Expr) -> Option<Expr> {
    let Expr::Subquery(query) = expr else {
        return None;
    };
    let Query { body, .. } = &**query;
    let SetExpr::Select(select) = &**body else {
        return None;
    };
    let [SelectItem::UnnamedExpr(Expr::Function(f))] = select.projection.as_slice() else {
        return None;
    };
    if !select.from.is_empty()
        || select.selection.is_some()
        || !f.name.to_string().eq_ignore_ascii_case("regexp_matches")
    {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let mut f = f.clone();
    let mut list = list.clone();
    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) = list.args.get_mut(2)
        && let Value::SingleQuotedString(flags) = &mut v.value
    {
        flags.retain(|c| !matches!(c, 'g' | 'c'));
        if flags.is_empty() {
            list.args.truncate(2);
        }
    }
    f.name = ObjectName::from(vec![Ident::new("regexp_match")]);
    f.args = FunctionArguments::List(list);
    Some(Expr::Function(f))
}

#[cfg(test)]
mod tests {
    use super::for_engine;

    #[test]
    fn an_unnest_alias_names_its_column() {
        assert_eq!(
            for_engine("select m from t cross join unnest(array['a', 'b']) as m"),
            "SELECT m FROM t CROSS JOIN UNNEST(ARRAY['a', 'b']) AS m (m)"
        );
        // Reading the joined table: a projection-level unnest instead of the join.
        assert_eq!(
            for_engine(
                "select c.id, merges from contacts as c cross join unnest(string_to_array(c.ids, ';')) as merges"
            ),
            "SELECT c.id, merges FROM (SELECT c.*, unnest(string_to_array(c.ids, ';')) AS merges FROM contacts AS c) AS c"
        );
    }

    #[test]
    fn interval_products_and_datetime_casts() {
        assert_eq!(
            for_engine(
                "select t + ((interval '1 second') * (-5)), interval '2' hour * n, cast(x as datetime) from s"
            ),
            "SELECT t + (CAST(CAST(((-5)) * 1 AS VARCHAR) || ' second' AS INTERVAL)), \
             CAST(CAST((n) * 2 AS VARCHAR) || ' hour' AS INTERVAL), CAST(x AS TIMESTAMP) FROM s"
        );
    }

    #[test]
    fn json_operators_become_functions() {
        assert_eq!(
            for_engine(
                "select a::json #>> '{shop_money,amount}' as x, b ->> 'k', (c -> 0) ->> '$.n[1]', d::jsonb from t"
            ),
            "SELECT json_extract_path_text(a, 'shop_money', 'amount') AS x, json_extract_path_text(b, 'k'), \
             json_extract_path_text((json_extract_path(c, '0')), 'n', '1'), d FROM t"
        );
        assert_eq!(
            for_engine("select '$.a' as p from t"),
            "select '$.a' as p from t"
        );
        // PostgreSQL binds the operator tighter than `=`.
        assert_eq!(
            for_engine("select v::json #>> '{in_hours}' = 'true' as b from t"),
            "SELECT (json_extract_path_text(v, 'in_hours')) = 'true' AS b FROM t"
        );
    }

    #[test]
    fn postgres_first_regex_match_subquery_becomes_regexp_match() {
        assert_eq!(
            for_engine(
                "select coalesce(array_length((select regexp_matches(email, '@[^.]*', 'ci')), 1), 0) from t"
            ),
            "SELECT coalesce(array_length(regexp_match(email, '@[^.]*', 'i'), 1), 0) FROM t"
        );
        assert_eq!(
            for_engine("select (select regexp_matches(s, '^a', '')) from t"),
            "SELECT regexp_match(s, '^a') FROM t"
        );
        // DuckDB's boolean `regexp_matches`, and a subquery over a table, stay as written.
        let duck = "select regexp_matches(s, '^a') from t";
        assert_eq!(for_engine(duck), duck);
        let over_table = "select (select regexp_matches(s, '^a') from u) from t";
        assert_eq!(for_engine(over_table), over_table);
    }

    #[test]
    fn tuples_in_rollup_and_cube_become_grouping_sets() {
        assert_eq!(
            for_engine("select a, b, c, count(*) from t group by rollup((a, b), c)"),
            "SELECT a, b, c, count(*) FROM t GROUP BY GROUPING SETS ((a, b, c), (a, b), ())"
        );
        assert_eq!(
            for_engine("select a, b, count(*) from t group by cube((a, b))"),
            "SELECT a, b, count(*) FROM t GROUP BY GROUPING SETS ((a, b), ())"
        );
        // What the planner has is left as written.
        let plain = "select a, count(*) from t group by rollup(a, b)";
        assert_eq!(for_engine(plain), plain);
    }
}

/// DataFusion's common subexpression elimination, kept from breaking window queries: given two
/// window functions that are the same once simplified (`sum(case when a is null then 0 else 1
/// end) over w` and the same over `b`, for non-null `a` and `b`: Fivetran's Stripe models), it
/// moves them into a projection, which cannot run them ("Physical plan does not support
/// logical expression WindowFunction", DataFusion #15190, fixed after 53). Such a rewrite is
/// dropped and the plan kept as it was; every other rewrite stands.
#[derive(Debug)]
pub struct GuardedCse(pub std::sync::Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>);

impl GuardedCse {
    /// The default optimizer rules with common subexpression elimination guarded.
    pub fn default_rules()
    -> Vec<std::sync::Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> {
        datafusion::optimizer::Optimizer::new()
            .rules
            .into_iter()
            .map(|rule| {
                if rule.name() == "common_sub_expression_eliminate" {
                    std::sync::Arc::new(GuardedCse(rule)) as _
                } else {
                    rule
                }
            })
            .collect()
    }
}

impl datafusion::optimizer::OptimizerRule for GuardedCse {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn apply_order(&self) -> Option<datafusion::optimizer::optimizer::ApplyOrder> {
        self.0.apply_order()
    }
    fn rewrite(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        config: &dyn datafusion::optimizer::OptimizerConfig,
    ) -> datafusion::error::Result<
        datafusion::common::tree_node::Transformed<datafusion::logical_expr::LogicalPlan>,
    > {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::{Expr, LogicalPlan};
        let original = plan.clone();
        let out = self.0.rewrite(plan, config)?;
        if !out.transformed {
            return Ok(out);
        }
        let window_in_projection = out.data.exists(|node| {
            Ok(matches!(node, LogicalPlan::Projection(p)
                if p.expr.iter().any(|e| e.exists(|e| Ok(matches!(e, Expr::WindowFunction(_)))).unwrap_or(false))))
        })?;
        Ok(if window_in_projection {
            Transformed::no(original)
        } else {
            out
        })
    }
}

/// A correlated scalar subquery over an aggregate (`(select max(o2.amount) from orders o2
/// where o2.customer_id = o.customer_id and o2.order_id <= o.order_id)`) that DataFusion's own
/// decorrelation leaves in place (it only takes equality correlations), rewritten into a join
/// it can run: number the outer rows, left-join the inner rows on the correlation, aggregate
/// per outer row, join the result back. `count(*)` counts a marker column so an outer row
/// without inner rows gets 0, as the subquery would. Shapes it does not know are left alone.
#[derive(Debug)]
pub struct DecorrelateScalarAggregates;

mod decorrelate {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
    use datafusion::error::Result;
    use datafusion::logical_expr::expr::AggregateFunction;
    use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
    use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, lit};
    use datafusion::optimizer::optimizer::ApplyOrder;
    use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
    use datafusion::prelude::col;

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// Aggregates that ignore NULL inputs (the rows a left join adds for outer rows without
    /// inner rows), so they give the subquery's answer.
    const NULL_IGNORING: [&str; 10] = [
        "min",
        "max",
        "sum",
        "avg",
        "count",
        "bool_and",
        "bool_or",
        "median",
        "any_value",
        "string_agg",
    ];

    impl OptimizerRule for super::DecorrelateScalarAggregates {
        fn name(&self) -> &str {
            "rsdbt_decorrelate_scalar_aggregates"
        }

        fn apply_order(&self) -> Option<ApplyOrder> {
            Some(ApplyOrder::BottomUp)
        }

        fn rewrite(
            &self,
            plan: LogicalPlan,
            _config: &dyn OptimizerConfig,
        ) -> Result<Transformed<LogicalPlan>> {
            // Each correlated subquery of the projection in turn; one it cannot rewrite is
            // left for the planner to report, and the others are still rewritten.
            let mut plan = plan;
            let mut changed = false;
            let mut skipped: Vec<Expr> = Vec::new();
            while let LogicalPlan::Projection(p) = &plan {
                let mut found = None;
                for e in &p.expr {
                    e.apply(|x| {
                        if let Expr::ScalarSubquery(sq) = x
                            && !sq.outer_ref_columns.is_empty()
                            && !skipped.contains(x)
                        {
                            found = Some(x.clone());
                            return Ok(TreeNodeRecursion::Stop);
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })?;
                    if found.is_some() {
                        break;
                    }
                }
                let Some(target) = found else {
                    break;
                };
                let Expr::ScalarSubquery(sq) = &target else {
                    break;
                };
                match rewrite_one(p.input.as_ref(), &p.expr, &target, &sq.subquery) {
                    Ok(Some(new)) => {
                        plan = new;
                        changed = true;
                    }
                    _ => skipped.push(target),
                }
            }
            Ok(if changed {
                Transformed::yes(plan)
            } else {
                Transformed::no(plan)
            })
        }
    }

    /// `plan` without the conjuncts that read outer columns, and those conjuncts: they sit in
    /// one filter, possibly under aliases and projections. Pushed-down copies in a scan's
    /// filters are dropped too.
    fn strip(plan: &LogicalPlan) -> Result<Option<(LogicalPlan, Vec<Expr>)>> {
        match plan {
            LogicalPlan::Filter(f) if f.predicate.contains_outer() => {
                let (correlated, local): (Vec<Expr>, Vec<Expr>) =
                    split_conjunction_owned(f.predicate.clone())
                        .into_iter()
                        .partition(Expr::contains_outer);
                let input = f
                    .input
                    .as_ref()
                    .clone()
                    .transform(|p| match p {
                        LogicalPlan::TableScan(mut ts)
                            if ts.filters.iter().any(Expr::contains_outer) =>
                        {
                            ts.filters.retain(|x| !x.contains_outer());
                            Ok(Transformed::yes(LogicalPlan::TableScan(ts)))
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                let mut b = LogicalPlanBuilder::from(input);
                if let Some(p) = conjunction(local) {
                    b = b.filter(p)?;
                }
                Ok(Some((b.build()?, correlated)))
            }
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) => {
                let [input] = plan.inputs()[..] else {
                    return Ok(None);
                };
                let Some((new_input, correlated)) = strip(input)? else {
                    return Ok(None);
                };
                let rebuilt = plan.with_new_exprs(plan.expressions(), vec![new_input])?;
                Ok(Some((rebuilt, correlated)))
            }
            _ => Ok(None),
        }
    }

    fn has_outer(plan: &LogicalPlan) -> bool {
        let mut outer = false;
        let _ = plan.apply(|p| {
            outer |= p.expressions().iter().any(Expr::contains_outer);
            Ok(if outer {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        outer
    }

    fn rewrite_one(
        input: &LogicalPlan,
        exprs: &[Expr],
        target: &Expr,
        sub: &LogicalPlan,
    ) -> Result<Option<LogicalPlan>> {
        // Peel: [Projection of one value] over Aggregate (no grouping) over Filter.
        let (top, agg) = match sub {
            LogicalPlan::Projection(pr) if pr.expr.len() == 1 => {
                (Some(pr.expr[0].clone()), pr.input.as_ref())
            }
            other => (None, other),
        };
        let LogicalPlan::Aggregate(agg) = agg else {
            return Ok(None);
        };
        if !agg.group_expr.is_empty() || agg.aggr_expr.len() != 1 && top.is_none() {
            return Ok(None);
        }
        // The correlated conjuncts, taken out of the filter that holds them (under aliases and
        // projections that keep columns); the rest of the inner plan stays as it is.
        let Some((source, correlated)) = strip(agg.input.as_ref())? else {
            return Ok(None);
        };
        if has_outer(&source) {
            return Ok(None);
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (rid, marker, value) = (
            format!("__rsdbt_rid_{n}"),
            format!("__rsdbt_m_{n}"),
            format!("__rsdbt_v_{n}"),
        );
        // Outer rows, numbered.
        let numbered = LogicalPlanBuilder::from(input.clone())
            .window(vec![
                datafusion::functions_window::expr_fn::row_number().alias(rid.clone()),
            ])?
            .build()?;
        // Inner rows, with their own filters and a marker that is never NULL.
        let inner = LogicalPlanBuilder::from(source);
        let inner_schema = inner.schema().clone();
        let mut inner_cols: Vec<Expr> = inner
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        inner_cols.push(lit(true).alias(marker.clone()));
        let inner = inner.project(inner_cols)?.build()?;
        let on = correlated
            .into_iter()
            .map(|e| {
                e.transform(|x| match x {
                    Expr::OuterReferenceColumn(_, c) => Ok(Transformed::yes(Expr::Column(c))),
                    // Written below the inner plan's aliases: the same column by name above.
                    Expr::Column(c) => {
                        let (q, f) = inner_schema.qualified_field_with_unqualified_name(&c.name)?;
                        Ok(Transformed::yes(Expr::Column(
                            datafusion::common::Column::new(q.cloned(), f.name()),
                        )))
                    }
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
            })
            .collect::<Result<Vec<_>>>()?;
        // The subquery's aggregates, per outer row; count(*) counts the marker.
        let mut aggs = Vec::new();
        for a in &agg.aggr_expr {
            let name = a.schema_name().to_string();
            let Expr::AggregateFunction(AggregateFunction { func, params }) = a else {
                return Ok(None);
            };
            if !NULL_IGNORING.contains(&func.name()) {
                return Ok(None);
            }
            let mut params = params.clone();
            if func.name() == "count" && params.args.iter().all(|x| matches!(x, Expr::Literal(..)))
            {
                params.args = vec![col(marker.as_str())];
            }
            aggs.push(
                Expr::AggregateFunction(AggregateFunction {
                    func: func.clone(),
                    params,
                })
                .alias(name),
            );
        }
        let value_expr = match top {
            Some(t) => t,
            None => Expr::Column(agg.schema.columns()[0].clone()),
        };
        // One group per outer row: its number makes it unique, and its columns ride along so
        // the projection above reads them from here. (Joining back on the number would be
        // wrong: `row_number() over ()` numbers rows again, maybe differently, in each use.)
        let outer_cols: Vec<Expr> = numbered
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        let mut carried = outer_cols.clone();
        carried.push(value_expr.alias(value.clone()));
        let joined = LogicalPlanBuilder::from(numbered)
            .join_on(inner, JoinType::Left, on)?
            .aggregate(outer_cols, aggs)?
            .project(carried)?
            .build()?;
        let replacement = col(value.as_str());
        let new_exprs = exprs
            .iter()
            .map(|e| {
                let name = e.schema_name().to_string();
                let new = e
                    .clone()
                    .transform(|x| {
                        if &x == target {
                            Ok(Transformed::yes(replacement.clone()))
                        } else {
                            Ok(Transformed::no(x))
                        }
                    })?
                    .data;
                new.alias_if_changed(name)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(
            LogicalPlanBuilder::from(joined)
                .project(new_exprs)?
                .build()?,
        ))
    }
}

/// PostgreSQL's timestamps without time zone, where DataFusion's differ:
/// - a zone or offset written in a literal cast to `timestamp` is ignored
///   (`cast('2021-06-07 07:35:20 America/Los_Angeles' as timestamp)` is 07:35:20, where
///   DataFusion converts to UTC);
/// - a zoned timestamp cast to `timestamp` gives its wall-clock time in its zone
///   (`cast(ts at time zone 'UTC' at time zone 'America/Los_Angeles' as timestamp)` is Los
///   Angeles time, where DataFusion keeps UTC's).
///
/// dbt-date's `convert_timezone` and its test timestamps are written this way.
#[derive(Debug)]
pub struct PostgresTimestamps;

impl datafusion::optimizer::AnalyzerRule for PostgresTimestamps {
    fn name(&self) -> &str {
        "rsdbt_postgres_timestamps"
    }

    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::{Cast, Expr, ExprSchemable, TryCast};
        use datafusion::scalar::ScalarValue;
        plan.transform_up_with_subqueries(|p| {
            let inputs = p.inputs();
            let schema = match inputs.as_slice() {
                [one] => Some(one.schema().clone()),
                _ => None,
            };
            // The rewritten expressions keep their names (a projection's column names).
            let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&p);
            p.map_expressions(|e| {
                let saved = names.save(&e);
                e.transform_up(|e| {
                    let (inner, to) = match &e {
                        Expr::Cast(Cast { expr, data_type })
                        | Expr::TryCast(TryCast { expr, data_type }) => (expr.as_ref(), data_type),
                        _ => return Ok(Transformed::no(e)),
                    };
                    if !matches!(to, DataType::Timestamp(_, None)) {
                        return Ok(Transformed::no(e));
                    }
                    let new_inner = match inner {
                        Expr::Literal(
                            ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)),
                            meta,
                        ) => match without_zone(text) {
                            Some(local) => {
                                Expr::Literal(ScalarValue::Utf8(Some(local)), meta.clone())
                            }
                            None => return Ok(Transformed::no(e)),
                        },
                        other => match schema.as_ref().map(|s| other.get_type(s.as_ref())) {
                            Some(Ok(DataType::Timestamp(_, Some(_)))) => {
                                datafusion::functions::datetime::to_local_time()
                                    .call(vec![other.clone()])
                            }
                            _ => return Ok(Transformed::no(e)),
                        },
                    };
                    let to = to.clone();
                    Ok(Transformed::yes(match e {
                        Expr::TryCast(_) => Expr::TryCast(TryCast::new(Box::new(new_inner), to)),
                        _ => Expr::Cast(Cast::new(Box::new(new_inner), to)),
                    }))
                })?
                .map_data(|e| Ok(saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }
}

/// `2021-06-07 07:35:20.5 America/Los_Angeles` (or `... +05:00`, `...Z`) without its zone.
fn without_zone(text: &str) -> Option<String> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r"^\s*(\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|[+-]\d\d(?::?\d\d)?|[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\s*$",
        )
        .expect("static regex")
    });
    re.captures(text).map(|c| c[1].to_string())
}

#[cfg(test)]
mod zone_tests {
    use super::without_zone;

    #[test]
    fn zones_in_timestamp_literals_are_dropped() {
        assert_eq!(
            without_zone("2021-06-07 07:35:20.000000 America/Los_Angeles").as_deref(),
            Some("2021-06-07 07:35:20.000000")
        );
        assert_eq!(
            without_zone("2021-06-07T07:35:20+05:00").as_deref(),
            Some("2021-06-07T07:35:20")
        );
        assert_eq!(
            without_zone("2021-06-07 07:35:20 UTC").as_deref(),
            Some("2021-06-07 07:35:20")
        );
        assert_eq!(without_zone("2021-06-07 07:35:20"), None);
        assert_eq!(without_zone("2021-06-07"), None);
    }
}
