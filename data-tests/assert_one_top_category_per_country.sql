-- Singular test: gld_category_by_country must have exactly one row per country.
select country, count(*) as rows_for_country
from {{ ref('gld_category_by_country') }}
group by country
having count(*) > 1
