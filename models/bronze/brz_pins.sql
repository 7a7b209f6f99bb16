select
    cast(pin_id as bigint) as pin_id,
    cast(user_id as bigint) as user_id,
    {{ null_if_blank('category') }} as category,
    {{ null_if_blank('title') }} as title,
    cast(follower_count as {{ dbt.type_string() }}) as follower_count_raw,
    media_type,
    cast(created_at as {{ dbt.type_string() }}) as created_at_raw,
    cast(ingested_at as timestamp) as ingested_at
from {{ ref('pins') }}
