select
    cast(pin_id as bigint) as pin_id,
    cast(event_at as varchar) as event_at_raw,
    cast(latitude as double) as latitude,
    cast(longitude as double) as longitude,
    {{ null_if_blank('country') }} as country
from {{ ref('geo') }}
