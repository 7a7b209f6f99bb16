select {{ 1 | no_such_filter }} as id
