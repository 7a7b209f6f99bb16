{{ config(alias='gld_top_posters', tags=['leaderboard']) }}
-- The 100 posters with the most followers on any of their pins.
select
    user_name,
    age_group,
    max(follower_count) as max_follower_count,
    count(*) as pin_count
from {{ ref('int_pins_enriched') }}
where user_name is not null and follower_count is not null
group by user_name, age_group
order by max_follower_count desc, user_name
limit 100
