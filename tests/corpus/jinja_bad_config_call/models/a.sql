{{ config(materialized=) }}
select 1 as id
