select
    cast(pin_id as bigint) as pin_id,
    cast(event_at as varchar) as event_at_raw,
    cast(latitude as double precision) as latitude,
    cast(longitude as double precision) as longitude,
    {{ null_if_blank('country') }} as country
from {{ ref('geo') }}
