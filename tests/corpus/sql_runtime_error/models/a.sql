{{ config(materialized='table') }}
select cast('x' as int) as id
