select nope from {{ ref('base') }}
