{{ config(materialized='table', table_format='orc') }}
select 1 as id
