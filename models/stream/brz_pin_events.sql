-- Each run reads only the records that arrived since the last one: the offsets it read are
-- committed with its rows (README: Streams into bronze).
{{ config(materialized='incremental') }}
select * from {{ source('app_events', 'pin_events') }}
