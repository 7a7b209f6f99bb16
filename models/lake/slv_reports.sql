{{ config(materialized='incremental', incremental_strategy='append', table_format='iceberg') }}
-- Reports only arrive, never change: new ones are appended to the Iceberg table.
select
    report_id,
    pin_id,
    lower(trim(reason)) as reason,
    reported_at,
    resolved
from {{ ref('brz_reports') }}
{% if is_incremental() %}
where reported_at > (select max(reported_at) from {{ this }})
{% endif %}
