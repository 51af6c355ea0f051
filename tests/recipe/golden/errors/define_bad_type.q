# define: limit=lots
let limit = 1024
pipeline { fold-constants max-bytes = $limit }
