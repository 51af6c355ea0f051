scheme a = uint8 observer percentil(99)
pipeline { fold-constants }
