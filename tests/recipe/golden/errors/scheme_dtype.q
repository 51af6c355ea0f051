scheme w = int9 symmetric
pipeline { fold-constants }
