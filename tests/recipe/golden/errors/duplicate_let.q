let a = 1
let a = 2
pipeline { fold-constants }
