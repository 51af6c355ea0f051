scheme w = int8 symetric
pipeline { fold-constants }
