select {{ ping(0) }} as n
