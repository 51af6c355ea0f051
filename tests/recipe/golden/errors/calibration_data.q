calibration { data "missing/*.npy" }
pipeline { fold-constants }
