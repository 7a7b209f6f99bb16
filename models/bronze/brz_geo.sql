select
    cast(pin_id as bigint) as pin_id,
    cast(event_at as {{ dbt.type_string() }}) as event_at_raw,
    cast(latitude as {{ dbt.type_float() }}) as latitude,
    cast(longitude as {{ dbt.type_float() }}) as longitude,
    {{ null_if_blank('country') }} as country
from {{ ref('geo') }}
