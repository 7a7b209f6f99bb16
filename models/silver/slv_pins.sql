{{ config(materialized='incremental', unique_key='pin_id', on_schema_change='append_new_columns') }}
-- One row per pin: the latest ingested version wins. Incremental: each run reads only rows
-- ingested after the newest one already here, and merges them on pin_id, so late-arriving
-- re-ingestions update the pins they belong to.
with ranked as (
    select
        *,
        row_number() over (partition by pin_id order by ingested_at desc) as version_rank
    from {{ ref('brz_pins') }}
    {% if is_incremental() %}
    where ingested_at > (select max(ingested_at) from {{ this }})
    {% endif %}
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
