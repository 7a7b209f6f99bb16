select {{ no_such_macro() }} as id
