{% macro pong(n) %}{{ ping(n + 1) }}{% endmacro %}
