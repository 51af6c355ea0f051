recipe r
fold-constants
