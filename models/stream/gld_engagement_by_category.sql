select
    p.category,
    e.action,
    count(*) as events,
    count(distinct e.user_id) as users
from {{ ref('slv_pin_events') }} e
join {{ ref('slv_pins') }} p on p.pin_id = e.pin_id
group by p.category, e.action
