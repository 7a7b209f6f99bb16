select '{{ env_var('RSDBT_CORPUS_UNSET') }}' as d
