{% macro ping(n) %}{{ pong(n + 1) }}{% endmacro %}
