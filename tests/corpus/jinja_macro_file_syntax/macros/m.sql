{% macro m() %}
{{ 1 + }}
{% endmacro %}
