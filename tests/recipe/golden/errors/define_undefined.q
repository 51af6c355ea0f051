# define: limt=3
let limit = 1024
pipeline { fold-constants max-bytes = $limit }
