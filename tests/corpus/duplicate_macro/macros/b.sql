{% macro m() %}2{% endmacro %}
