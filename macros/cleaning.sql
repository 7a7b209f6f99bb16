{# Cleaning helpers shared by the silver models. Callable from any model without an import. #}

{% macro null_if_blank(column) -%}
nullif(trim({{ column }}), '')
{%- endmacro %}

{# Follower counts arrive as "345", "12k" or "1.2M": turn them into integers. #}
{% macro parse_count(column) -%}
case
    when {{ null_if_blank(column) }} is null then null
    when lower(trim({{ column }})) like '%k' then cast(cast(replace(lower(trim({{ column }})), 'k', '') as {{ dbt.type_float() }}) * 1000 as bigint)
    when lower(trim({{ column }})) like '%m' then cast(cast(replace(lower(trim({{ column }})), 'm', '') as {{ dbt.type_float() }}) * 1000000 as bigint)
    else cast(trim({{ column }}) as bigint)
end
{%- endmacro %}

{# Exports mix three timestamp formats; try each in turn. DataFusion's to_timestamp takes
   several chrono formats; PostgreSQL's and Spark's take one, so pick it by the text's shape. #}
{% macro parse_timestamp(column) -%}
{%- if target.type == 'postgres' -%}
case
    when {{ column }} ~ '^\d{4}-\d{2}-\d{2} ' then to_timestamp({{ column }}, 'YYYY-MM-DD HH24:MI:SS')::timestamp
    when {{ column }} ~ '^\d{4}-\d{2}-\d{2}T' then to_timestamp({{ column }}, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')::timestamp
    when {{ column }} ~ '^\d{2}/\d{2}/\d{4} ' then to_timestamp({{ column }}, 'DD/MM/YYYY HH24:MI')::timestamp
end
{%- elif target.type == 'spark' -%}
case
    when {{ column }} rlike '^[0-9]{4}-[0-9]{2}-[0-9]{2} ' then to_timestamp({{ column }}, 'yyyy-MM-dd HH:mm:ss')
    when {{ column }} rlike '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' then to_timestamp({{ column }}, "yyyy-MM-dd'T'HH:mm:ss'Z'")
    when {{ column }} rlike '^[0-9]{2}/[0-9]{2}/[0-9]{4} ' then to_timestamp({{ column }}, 'dd/MM/yyyy HH:mm')
end
{%- else -%}
to_timestamp(
    {{ null_if_blank(column) }},
    '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%SZ', '%d/%m/%Y %H:%M'
)
{%- endif %}
{%- endmacro %}

{# The median as a float on both engines (PostgreSQL has no median()). #}
{% macro median(column) -%}
{%- if target.type == 'postgres' -%}
percentile_cont(0.5) within group (order by {{ column }})
{%- else -%}
median(cast({{ column }} as double))
{%- endif %}
{%- endmacro %}
