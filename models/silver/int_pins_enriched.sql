{{ config(materialized='ephemeral') }}
-- Pins with their poster and location; inlined as a CTE into the gold models.
select
    p.pin_id,
    p.category,
    p.follower_count,
    p.created_at,
    extract(year from p.created_at) as post_year,
    u.user_name,
    u.age_group,
    g.country
from {{ ref('slv_pins') }} p
left join {{ ref('slv_users') }} u on u.user_id = p.user_id
left join {{ ref('slv_geo') }} g on g.pin_id = p.pin_id
where extract(year from p.created_at) >= {{ var('min_year') }}
