{#- dbt's cross-database macros (`dbt.dateadd(...)` or plain `dateadd(...)`): the same call
    renders DataFusion SQL on the embedded target, PostgreSQL SQL on `postgres` and Spark SQL on
    `spark` (where `varchar` needs a length: text is `string`). -#}

{% macro type_string() %}{{ 'string' if target.type == 'spark' else 'varchar' }}{% endmacro %}
{% macro type_timestamp() %}{{ 'timestamp' }}{% endmacro %}
{% macro type_int() %}{{ 'int' if target.type == 'spark' else 'integer' }}{% endmacro %}
{% macro type_bigint() %}{{ 'bigint' }}{% endmacro %}
{% macro type_boolean() %}{{ 'boolean' }}{% endmacro %}
{% macro type_float() %}{{ 'float' if target.type == 'postgres' else 'double' }}{% endmacro %}
{% macro type_numeric() %}{{ 'numeric(28,6)' if target.type == 'postgres' else 'decimal(28,6)' }}{% endmacro %}

{% macro current_timestamp() %}now(){% endmacro %}
{#- dbt's older names: a timestamp without time zone (PostgreSQL's session time / UTC). -#}
{% macro current_timestamp_backcompat() %}cast({{ current_timestamp() }} as timestamp){% endmacro %}
{% macro current_timestamp_in_utc_backcompat() %}cast({{ current_timestamp() }}{{ " at time zone 'utc'" if target.type == 'postgres' }} as timestamp){% endmacro %}

{% macro string_literal(value) %}'{{ value }}'{% endmacro %}

{% macro escape_single_quotes(expression) %}{{ expression | replace("'", "''") }}{% endmacro %}

{% macro concat(fields) %}{{ fields | join(' || ') }}{% endmacro %}

{% macro hash(field) %}md5(cast({{ field }} as {{ type_string() }})){% endmacro %}

{% macro safe_cast(field, type) -%}
{{ 'cast' if target.type == 'postgres' else 'try_cast' }}({{ field }} as {{ type }})
{%- endmacro %}

{% macro cast_bool_to_text(field) %}cast({{ field }} as {{ type_string() }}){% endmacro %}

{% macro split_part(string_text, delimiter_text, part_number) -%}
split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }})
{%- endmacro %}

{% macro date_trunc(datepart, date) %}date_trunc('{{ datepart }}', {{ date }}){% endmacro %}

{#- DataFusion cannot multiply an interval, so it parses one from text. -#}
{% macro dateadd(datepart, interval, from_date_or_timestamp) -%}
{%- if target.type == 'postgres' -%}
({{ from_date_or_timestamp }} + (({{ interval }}) * interval '1 {{ datepart }}'))
{%- elif target.type == 'spark' -%}
timestampadd({{ datepart }}, {{ interval }}, cast({{ from_date_or_timestamp }} as timestamp))
{%- else -%}
(cast({{ from_date_or_timestamp }} as timestamp) + cast(cast(({{ interval }}) as varchar) || ' {{ datepart }}' as interval))
{%- endif -%}
{%- endmacro %}

{#- Counts the `datepart` boundaries crossed between the two values, as dbt's does. -#}
{% macro datediff(first_date, second_date, datepart) -%}
{%- set year = "date_part('year', " -%}
{%- if datepart == 'year' -%}
cast({{ year }}{{ second_date }}) - {{ year }}{{ first_date }}) as bigint)
{%- elif datepart in ('month', 'quarter') -%}
{%- set n = 12 if datepart == 'month' else 4 -%}
cast((({{ year }}{{ second_date }}) - {{ year }}{{ first_date }})) * {{ n }} + date_part('{{ datepart }}', {{ second_date }}) - date_part('{{ datepart }}', {{ first_date }})) as bigint)
{%- elif datepart in ('day', 'hour', 'minute', 'second') -%}
{%- set seconds = {'day': 86400, 'hour': 3600, 'minute': 60, 'second': 1}[datepart] -%}
cast((date_part('epoch', date_trunc('{{ datepart }}', cast({{ second_date }} as timestamp))) - date_part('epoch', date_trunc('{{ datepart }}', cast({{ first_date }} as timestamp)))) / {{ seconds }} as bigint)
{%- elif datepart == 'week' -%}
{#- Week boundaries (weeks start on Sunday) crossed, as dbt-postgres counts them. -#}
({{ datediff(first_date, second_date, 'day') }} / 7 + case
    when date_part('dow', cast({{ first_date }} as timestamp)) <= date_part('dow', cast({{ second_date }} as timestamp))
    then case when {{ first_date }} <= {{ second_date }} then 0 else -1 end
    else case when {{ first_date }} <= {{ second_date }} then 1 else 0 end
end)
{%- else -%}
{{ exceptions.raise_compiler_error("datediff: unsupported datepart '" ~ datepart ~ "' (year, quarter, month, week, day, hour, minute, second)") }}
{%- endif -%}
{%- endmacro %}

{% macro listagg(measure, delimiter_text="','", order_by_clause=none, limit_num=none) -%}
{#- Without an order, the embedded engine's parallel aggregation gives any order, each run
    another; ordering by the values makes it deterministic (and what packages that order
    their input first, as dbt-project-evaluator, expect). -#}
{%- set order = ' ' ~ order_by_clause if order_by_clause else (' order by ' ~ measure if target.type != 'postgres' else '') -%}
{%- if limit_num and target.type == 'postgres' -%}
array_to_string((array_agg({{ measure }}{{ order }}))[1:{{ limit_num }}], {{ delimiter_text }})
{%- elif target.type == 'spark' -%}
{#- Spark 3 has no string_agg; collect_list keeps no order, so the values are sorted. -#}
{%- set items = 'array_sort(collect_list(' ~ measure ~ '))' -%}
array_join({{ 'slice(' ~ items ~ ', 1, ' ~ limit_num ~ ')' if limit_num else items }}, {{ delimiter_text }})
{%- elif limit_num -%}
array_to_string(array_slice(array_agg({{ measure }}{{ order }}), 1, {{ limit_num }}), {{ delimiter_text }})
{%- else -%}
string_agg({{ measure }}, {{ delimiter_text }}{{ order }})
{%- endif -%}
{%- endmacro %}

{% macro any_value(expression) %}min({{ expression }}){% endmacro %}

{% macro bool_or(expression) %}bool_or({{ expression }}){% endmacro %}

{% macro length(expression) %}length({{ expression }}){% endmacro %}

{% macro position(substring_text, string_text) %}{{ 'instr' if target.type == 'spark' else 'strpos' }}({{ string_text }}, {{ substring_text }}){% endmacro %}

{% macro replace(field, old_chars, new_chars) %}replace({{ field }}, {{ old_chars }}, {{ new_chars }}){% endmacro %}

{% macro right(string_text, length_expression) %}right({{ string_text }}, {{ length_expression }}){% endmacro %}

{% macro cast(field, type) %}cast({{ field }} as {{ type }}){% endmacro %}

{% macro last_day(date, datepart) -%}
cast(date_trunc('{{ datepart }}', {{ date }}) + interval '1 {{ datepart }}' - interval '1 day' as date)
{%- endmacro %}

{% macro except() %}except{% endmacro %}

{% macro intersect() %}intersect{% endmacro %}

{% macro equals(expr1, expr2) %}(({{ expr1 }} = {{ expr2 }}) or ({{ expr1 }} is null and {{ expr2 }} is null)){% endmacro %}

{% macro array_construct(inputs=[], data_type=none) -%}
{%- if target.type == 'spark' -%}{{ 'array(' ~ (inputs | join(', ')) ~ ')' if inputs else 'cast(array() as array<' ~ (data_type or 'string') ~ '>)' }}
{%- elif inputs -%}make_array({{ inputs | join(', ') }}){%- else -%}cast(make_array() as {{ data_type or 'varchar' }}[]){%- endif -%}
{%- endmacro %}

{% macro array_append(array, new_element) %}array_append({{ array }}, {{ new_element }}){% endmacro %}

{% macro array_concat(array_1, array_2) %}{{ 'concat' if target.type == 'spark' else 'array_concat' }}({{ array_1 }}, {{ array_2 }}){% endmacro %}
