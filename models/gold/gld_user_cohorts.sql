-- Users who joined each year, by age group.
select
    extract(year from date_joined) as join_year,
    age_group,
    count(*) as user_count
from {{ ref('slv_users') }}
where date_joined is not null
group by 1, 2
