{#- History of each user's age group (SCD type 2): a new version whenever it changes. -#}
{% snapshot users_snapshot %}
{{ config(
    target_schema='snapshots',
    unique_key='user_id',
    strategy='check',
    check_cols=['age_group', 'user_name'],
    hard_deletes='invalidate'
) }}
select user_id, user_name, age_group from {{ ref('slv_users') }}
{% endsnapshot %}
