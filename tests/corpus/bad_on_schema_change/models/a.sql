{{ config(materialized='incremental', on_schema_change='explode') }}
select 1 as id
