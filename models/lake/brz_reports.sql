select report_id, pin_id, reason, reported_at, resolved
from {{ source('app', 'reports') }}
