-- Raw users as exported, lightly typed.
select
    user_id,
    {{ null_if_blank('first_name') }} as first_name,
    {{ null_if_blank('last_name') }} as last_name,
    age,
    cast(date_joined as {{ dbt.type_string() }}) as date_joined_raw
from {{ ref('users') }}
