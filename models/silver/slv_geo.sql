-- Valid geolocation fixes only, one per pin and timestamp.
select distinct
    pin_id,
    {{ parse_timestamp('event_at_raw') }} as event_at,
    latitude,
    longitude,
    coalesce(country, '{{ var("unknown_country") }}') as country
from {{ ref('brz_geo') }}
where latitude between -90 and 90
  and longitude between -180 and 180
