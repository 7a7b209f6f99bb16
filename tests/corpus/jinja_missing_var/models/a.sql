select {{ var('start_date') }} as d
