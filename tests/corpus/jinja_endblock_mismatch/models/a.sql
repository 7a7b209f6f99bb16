{% for x in [1] %}
select 1 as id
{% endif %}
