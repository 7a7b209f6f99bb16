-- One row per pin: the latest ingested version wins (late-arriving updates replace earlier rows).
with ranked as (
    select
        *,
        row_number() over (partition by pin_id order by ingested_at desc) as version_rank
    from {{ ref('brz_pins') }}
)
select
    pin_id,
    user_id,
    coalesce(category, 'uncategorised') as category,
    title,
    {{ parse_count('follower_count_raw') }} as follower_count,
    media_type,
    {{ parse_timestamp('created_at_raw') }} as created_at,
    ingested_at
from ranked
where version_rank = 1
