{{ config(materialized='incremental', unique_key='event_id', incremental_strategy='merge') }}
select
    e.event_id,
    e.pin_id,
    e.user_id,
    lower(e.action) as action,
    e.occurred_at,
    e._offset as kafka_offset
from {{ ref('brz_pin_events') }} e
join {{ ref('slv_pins') }} p on p.pin_id = e.pin_id
where e._error is null
{% if is_incremental() %}
  -- events come in partition by partition, not in id order: keep the ones not seen yet
  and not exists (select 1 from {{ this }} t where t.event_id = e.event_id)
{% endif %}
