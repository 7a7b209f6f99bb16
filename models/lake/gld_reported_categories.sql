{{ config(
    materialized='table',
    publish={'connection': 'app_db', 'schema': 'marts', 'table': 'reported_categories'}
) }}
-- PostgreSQL (open reports, read live), Iceberg (slv_reports) and Delta (slv_pins) in one query.
with open_now as (
    select pin_id, count(*) as open_reports
    from {{ source('app', 'reports') }}
    where not resolved
    group by pin_id
)
select
    p.category,
    r.reason,
    count(*) as reports,
    sum(coalesce(o.open_reports, 0)) as open_reports_on_those_pins
from {{ ref('slv_reports') }} r
join {{ ref('slv_pins') }} p on p.pin_id = r.pin_id
left join open_now o on o.pin_id = r.pin_id
group by p.category, r.reason
