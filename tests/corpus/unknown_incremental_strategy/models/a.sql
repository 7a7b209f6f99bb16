{{ config(materialized='incremental', incremental_strategy='upsert') }}
select 1 as id
