recipe nothing
let a = 1
