scheme a = uint8 observer percentile(101)
pipeline { fold-constants }
