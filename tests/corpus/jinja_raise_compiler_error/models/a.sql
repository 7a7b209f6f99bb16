{{ exceptions.raise_compiler_error('stop here: bad input') }}
select 1 as id
