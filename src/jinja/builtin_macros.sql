{#- Built-in generic tests (dbt's names and arguments). A project macro or test block of the
    same name replaces any of them. Each returns the failing rows. -#}

{% macro test_unique(model, column_name) -%}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{%- endmacro %}

{% macro test_not_null(model, column_name) -%}
select {{ '*' if should_store_failures() else column_name }}
from {{ model }}
where {{ column_name }} is null
{%- endmacro %}

{% macro test_accepted_values(model, column_name, values, quote=true) -%}
with all_values as (
    select {{ column_name }} as value_field, count(*) as n_records
    from {{ model }}
    group by {{ column_name }}
)
select *
from all_values
where value_field not in (
    {%- for v in values -%}
    {%- if quote %}'{{ v }}'{% else %}{{ v }}{% endif -%}{{ ', ' if not loop.last }}
    {%- endfor -%}
)
{%- endmacro %}

{% macro test_relationships(model, column_name, to, field) -%}
with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),
parent as (
    select {{ field }} as to_field
    from {{ to }}
)
select from_field
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null
{%- endmacro %}

{#- dbt's relation-naming macros, for projects and packages that call them: an override of
    `generate_schema_name` that falls back on `default__generate_schema_name`, a test that
    asks what schema a name gets. Without an override rsdbt names relations in Rust, the same
    way. -#}

{% macro generate_schema_name(custom_schema_name=none, node=none) -%}
{{ default__generate_schema_name(custom_schema_name, node) }}
{%- endmacro %}

{% macro default__generate_schema_name(custom_schema_name, node) -%}
{%- if custom_schema_name is none -%}{{ target.schema }}
{%- else -%}{{ target.schema }}_{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}

{% macro generate_alias_name(custom_alias_name=none, node=none) -%}
{{ default__generate_alias_name(custom_alias_name, node) }}
{%- endmacro %}

{% macro default__generate_alias_name(custom_alias_name=none, node=none) -%}
{%- if custom_alias_name -%}{{ custom_alias_name | trim }}
{%- elif node.version -%}{{ node.name }}_v{{ node.version | string | replace('.', '_') }}
{%- else -%}{{ node.name }}{%- endif -%}
{%- endmacro %}

{% macro generate_database_name(custom_database_name=none, node=none) -%}
{{ default__generate_database_name(custom_database_name, node) }}
{%- endmacro %}

{% macro default__generate_database_name(custom_database_name=none, node=none) -%}
{%- if custom_database_name is none -%}{{ target.database }}
{%- else -%}{{ custom_database_name | trim }}{%- endif -%}
{%- endmacro %}

{#- dbt's helper for a scratch relation (`<identifier>__dbt_tmp`): a temporary table, named
    without schema or database as on PostgreSQL (the engines' temporary tables live apart). -#}
{% macro make_temp_relation(base_relation, suffix='__dbt_tmp') -%}
{{ return(base_relation.incorporate(path={'identifier': base_relation.identifier ~ suffix, 'schema': none, 'database': none})) }}
{%- endmacro %}
