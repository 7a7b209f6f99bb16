-- Posts per year and category, with the median follower count of their posters.
select
    post_year,
    category,
    count(*) as post_count,
    {{ median('follower_count') }} as median_follower_count
from {{ ref('int_pins_enriched') }}
group by post_year, category
