-- One row per user: exact duplicates from re-exports removed, join date parsed.
with deduped as (
    select distinct user_id, first_name, last_name, age, date_joined_raw
    from {{ ref('brz_users') }}
)
select
    user_id,
    first_name || ' ' || last_name as user_name,
    age,
    case
        when age is null then 'unknown'
        when age < 25 then '18-24'
        when age < 36 then '25-35'
        when age < 51 then '36-50'
        else '50+'
    end as age_group,
    {{ parse_timestamp('date_joined_raw') }} as date_joined
from deduped
