select * from {{ ref('otherpkg', 'base') }}
