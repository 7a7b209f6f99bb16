select '{{ env_var('DBT_ENV_SECRET_X', 'x') }}' as d
