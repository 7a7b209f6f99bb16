{# Cleaning helpers shared by the silver models. Callable from any model without an import. #}

{% macro null_if_blank(column) -%}
nullif(trim({{ column }}), '')
{%- endmacro %}

{# Follower counts arrive as "345", "12k" or "1.2M": turn them into integers. #}
{% macro parse_count(column) -%}
case
    when {{ null_if_blank(column) }} is null then null
    when lower(trim({{ column }})) like '%k' then cast(cast(rtrim(lower(trim({{ column }})), 'k') as double) * 1000 as bigint)
    when lower(trim({{ column }})) like '%m' then cast(cast(rtrim(lower(trim({{ column }})), 'm') as double) * 1000000 as bigint)
    else cast(trim({{ column }}) as bigint)
end
{%- endmacro %}

{# Exports mix three timestamp formats; try each in turn. #}
{% macro parse_timestamp(column) -%}
to_timestamp(
    {{ null_if_blank(column) }},
    '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%SZ', '%d/%m/%Y %H:%M'
)
{%- endmacro %}
