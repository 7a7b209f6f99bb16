-- The most popular category in each country (ties broken by category name).
with counts as (
    select country, category, count(*) as pin_count
    from {{ ref('int_pins_enriched') }}
    where country is not null
    group by country, category
),
ranked as (
    select *, row_number() over (partition by country order by pin_count desc, category) as rnk
    from counts
)
select country, category, pin_count
from ranked
where rnk = 1
